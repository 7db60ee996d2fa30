"""``facesr info``: parameter count, FLOPs and output shape of a model (from a config or a checkpoint)."""

from __future__ import annotations

import json

from . import add_set


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="parameter count, FLOPs and output shape of a model")
    p.add_argument("--config", help="YAML preset: count the model it builds")
    p.add_argument("--checkpoint", help="weights file: count the model it holds (neither: the shipped model)")
    p.add_argument("--ema", action="store_true", help="with --checkpoint: read the EMA weights")
    p.add_argument(
        "--shape", type=int, nargs="+", default=[3, 128, 128], metavar="N", help="input C H W (default 3 128 128)"
    )
    p.add_argument("--max-params", type=int, help="report whether the model fits under this cap (exit 1 if not)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_set(p)
    p.set_defaults(func=run)


def run(a) -> int:
    from ..config import load_config
    from ..errors import FacesrError
    from ..models import build_model, count_flops, count_params, format_size, load_model
    from ..models.registry import arch_config_of

    if a.config and a.checkpoint:
        raise FacesrError("give one of --config or --checkpoint, not both (neither: the shipped model)")
    if a.checkpoint and a.overrides:
        raise FacesrError("--set applies to --config, not --checkpoint")
    shape = tuple(a.shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise FacesrError(f"--shape needs three positive integers C H W, got {' '.join(map(str, a.shape))}")
    if shape[0] > 64 or max(shape[1:]) > 65536:
        raise FacesrError(f"--shape {' '.join(map(str, shape))}: at most 64 channels and 65536 pixels a side")
    if a.config:
        cfg = load_config(a.config, a.overrides)
        model = build_model(cfg.model.arch, **cfg.model.arch_kwargs())
        cap = a.max_params if a.max_params is not None else cfg.model.max_params
        arch = {"arch": cfg.model.arch, **arch_config_of(model)}
    else:
        from ..assets import shipped_checkpoint

        path = a.checkpoint or shipped_checkpoint()
        model, lw = load_model(path, ema=a.ema)
        cap = a.max_params
        arch = {"arch": lw.arch, **lw.arch_config, "source_format": lw.source_format}
        if not a.checkpoint:
            arch["checkpoint"] = "shipped"
    params = count_params(model)
    in_ch = arch_config_of(model).get("in_channels") if hasattr(model, "arch_config") else None
    if in_ch is not None and shape[0] != in_ch:
        raise FacesrError(f"--shape: the model takes {in_ch} input channels, got C={shape[0]}")
    # Counted on the meta device: shapes only, no memory, so any --shape up to the cap is instant.
    import copy

    try:
        flops = count_flops(copy.deepcopy(model).to("meta"), shape)
    except RuntimeError as exc:
        raise FacesrError(
            f"--shape {' '.join(map(str, shape))}: the model cannot take this input ({str(exc).splitlines()[0][:120]})"
        ) from None
    out_shape = list(flops.output_shape)
    fits = None if cap is None else params <= cap
    if a.json:
        print(
            json.dumps(
                {
                    "params": params,
                    "flops": int(flops),
                    "input_shape": list(shape),
                    "output_shape": out_shape,
                    "max_params": cap,
                    "fits": fits,
                    "model": arch,
                }
            )
        )
    else:
        print(f"model:   {', '.join(f'{k}={v}' for k, v in arch.items())}")
        print(f"params:  {params:,} ({format_size(params)})")
        print(
            f"flops:   {flops:,} ({format_size(flops)}) multiply-adds for input {'x'.join(map(str, shape))}, "
            f"as MMagic get_flops counts"
        )
        print(f"output:  {'x'.join(map(str, out_shape))}")
        if cap is not None:
            print(f"cap:     {cap:,} -> {'fits' if fits else 'OVER THE CAP by ' + format(params - cap, ',')}")
    return 0 if fits in (None, True) else 1
