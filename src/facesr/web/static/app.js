/* facesr web page: pick a face, run one job on the server, compare the result with a slider.
 *
 * One upload per job: POST /jobs sends the file once and streams JSON lines about the job
 * (position in the queue, tiles done / total, time left); when it is done the page fetches
 * the restored PNG, the bicubic x4 PNG and the decoded input from that job's own URLs.
 * Every callback checks that its job is still the current one, so a result can never be
 * shown or downloaded under another file's name.  Closing the tab, picking another file or
 * pressing Cancel closes the stream, which cancels the job on the server.
 *
 * Whole-photo mode (when the server has a face detector): the server finds the faces, restores
 * each one and pastes them back over the photo enlarged ×2; progress counts faces, and the
 * detections come back with the result (boxes in output pixels), drawn over the picture on request.
 */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var els = {
    form: $("form"), input: $("file"), drop: $("drop"), thumb: $("thumb"), thumbEmpty: $("thumb-empty"),
    dropTitle: $("drop-title"), fname: $("fname"), note: $("note"), photoMode: $("photo-mode"),
    modeFace: $("mode-face"), modePhoto: $("mode-photo"), modeHelp: $("mode-help"),
    facesToggle: $("faces-toggle"), showFaces: $("show-faces"), boxes: $("boxes"),
    go: $("go"), cancel: $("cancel"), progress: $("progress"), bar: $("bar"), progressText: $("progress-text"),
    status: $("status"), result: $("result"), viewer: $("viewer"), before: $("img-before"), after: $("img-after"),
    afterLayer: $("after-layer"), tagBefore: $("tag-before"), tagAfter: $("tag-after"), handle: $("handle"),
    split: $("split"),
    placeholder: $("placeholder"), hint: $("hint"), sizes: $("sizes"), download: $("download"),
    examples: $("examples"), limits: $("limits")
  };

  var PLACEHOLDER = els.placeholder.textContent;
  var OR_PHOTO = " Or choose Whole photo to find and restore each face in it.";
  var info = { scale: 4, max_upload_bytes: Infinity, face_note_pixels: 65536, photo_mode: false, photo_scale: 2,
               photo_suggest_side: 256, max_faces: 32, examples: [] };
  var picked = null;     // {file, name, url}: the file chosen now
  var current = null;    // the job whose progress and result the page shows
  var shown = [];        // object URLs in the viewer and the download link
  var timer = null;
  var view = { W: 0, H: 0, zoom: "fit", z: 1, tx: 0, ty: 0, split: 0.5, before: "bicubic", urls: null, scale: 4,
               faces: null };

  // ------------------------------------------------------------------ words

  var NB = "\u00a0";  // no-break space: "0.7 s" and "128 × 128" never split across lines
  function secs(t) {
    if (t < 10) return t.toFixed(1) + NB + "s";
    if (t < 90) return Math.round(t) + NB + "s";
    return Math.floor(t / 60) + NB + "min " + (Math.round(t) % 60) + NB + "s";
  }
  function kb(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + NB + "MB" : Math.max(1, Math.round(n / 1e3)) + NB + "KB"; }
  function dims(w, h) { return w + NB + "×" + NB + h; }
  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }
  function say(msg, isError) {
    els.status.textContent = msg || "";
    els.status.className = "status" + (isError ? " err" : "");
  }

  // ------------------------------------------------------------------ picking

  function pick(f, opts) {
    if (!f) return;
    stopJob("picked another picture");
    clearResult();
    if (picked && picked.url) URL.revokeObjectURL(picked.url);
    picked = { file: f, name: f.name || "pasted image.png", url: URL.createObjectURL(f) };
    var mine = picked;
    els.dropTitle.textContent = picked.name;
    els.fname.textContent = kb(f.size);
    els.note.hidden = true;
    els.thumb.hidden = true;
    els.thumbEmpty.hidden = false;
    els.thumb.onload = function () {
      if (picked !== mine) return;
      var w = els.thumb.naturalWidth, h = els.thumb.naturalHeight;
      els.thumb.hidden = false;
      els.thumbEmpty.hidden = true;
      els.fname.textContent = dims(w, h) + " pixels · " + kb(f.size);
      mine.w = w;
      mine.h = h;
      // a picture much larger than a face is probably a photo with faces in it: suggest whole-photo mode
      if (info.photo_mode) setMode(Math.max(w, h) > info.photo_suggest_side ? "photo" : "face", true);
      updateNote();
    };
    els.thumb.onerror = function () {
      if (picked !== mine) return;
      els.fname.textContent = kb(f.size) + " · no preview in this browser (the server may still read it)";
    };
    els.thumb.src = picked.url;
    if (els.input.files[0] !== f) els.input.value = "";
    if (opts && opts.run) start();
    else say("Ready: press Restore.");
  }

  function showNote(text) {
    els.note.textContent = text || "";
    els.note.hidden = !text;
  }

  function mode() { return info.photo_mode && els.modePhoto.checked ? "photo" : "face"; }

  function setMode(m, suggested) {
    els.modePhoto.checked = m === "photo";
    els.modeFace.checked = m !== "photo";
    if (picked) picked.suggested = !!suggested;
    els.modeHelp.textContent = m === "photo" ?
      "Finds each face, restores it and enlarges the rest of the photo ×" + info.photo_scale + "." :
      "One face, cropped close: restored ×" + info.scale + ".";
  }

  // the note under the picture: what the chosen mode will do with a picture of this size
  function updateNote() {
    if (!picked || !picked.w) { showNote(""); return; }
    var w = picked.w, h = picked.h;
    if (mode() === "photo") {
      showNote(picked.suggested ? "This picture is " + dims(w, h) + " pixels, larger than a face crop, so " +
               "Whole photo is chosen: facesr finds the faces and restores each one. For one face " +
               "cropped close, choose Face crop." : "");
    } else if (w * h > info.face_note_pixels && info.face_note) {
      showNote(info.face_note.replace("{w}", w).replace("{h}", h) +
               (info.photo_mode ? OR_PHOTO : ""));
    } else {
      showNote("");
    }
  }

  [els.modeFace, els.modePhoto].forEach(function (r) {
    r.addEventListener("change", function () { setMode(mode(), false); updateNote(); });
  });

  els.input.addEventListener("change", function () { pick(els.input.files[0]); });
  ["dragenter", "dragover"].forEach(function (t) {
    els.drop.addEventListener(t, function (e) { e.preventDefault(); els.drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    els.drop.addEventListener(t, function (e) { e.preventDefault(); els.drop.classList.remove("over"); });
  });
  els.drop.addEventListener("drop", function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) pick(e.dataTransfer.files[0]);
  });
  // a file dropped beside the drop zone must not make the browser leave the page
  window.addEventListener("dragover", function (e) { e.preventDefault(); });
  window.addEventListener("drop", function (e) { e.preventDefault(); });
  document.addEventListener("paste", function (e) {
    var items = (e.clipboardData && e.clipboardData.items) || [];
    for (var i = 0; i < items.length; i++) {
      if (items[i].kind === "file") { pick(items[i].getAsFile()); break; }
    }
  });

  // ------------------------------------------------------------------ jobs

  function setBusy(busy) {
    els.placeholder.textContent = busy ? "Restoring… the result will appear here." : PLACEHOLDER;
    els.go.disabled = busy;
    els.cancel.hidden = !busy;
    els.progress.hidden = !busy;
    if (timer) { clearInterval(timer); timer = null; }
    if (busy) timer = setInterval(function () { if (current) render(current); }, 250);
  }

  function start() {
    if (!picked) { say("Choose a picture first.", true); return; }
    if (picked.file.size > info.max_upload_bytes) {
      say("This file is " + kb(picked.file.size) + ", over this server's cap of " + kb(info.max_upload_bytes) +
          " per file. Crop the picture to the face or save it smaller, then try again.", true);
      return;
    }
    stopJob("started again");
    clearResult();
    var job = { name: picked.name, t0: performance.now(), seen: 0, snap: null, id: null, phase: "uploading",
                sent: 0, runT0: null, ended: false };
    current = job;
    setBusy(true);
    say("");
    render(job);
    var fd = new FormData();
    fd.append("image", picked.file, picked.name);
    job.mode = mode();
    fd.append("mode", job.mode);
    var xhr = new XMLHttpRequest();
    job.xhr = xhr;
    xhr.open("POST", "/jobs");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) { job.sent = e.loaded / Math.max(1, e.total); if (job === current) render(job); }
    };
    xhr.upload.onload = function () { job.phase = "waiting"; if (job === current) render(job); };
    xhr.onprogress = function () { consume(job); };
    xhr.onload = function () {
      if (xhr.status !== 200) {
        fail(job, (xhr.responseText || "").trim() || "The server answered " + xhr.status + " " + xhr.statusText + ".");
        return;
      }
      consume(job);
      if (!job.ended) fail(job, "The connection to the server ended before the picture was restored. Try again.");
    };
    xhr.onerror = function () { fail(job, "Cannot reach the facesr server. Is it still running?"); };
    xhr.send(fd);
  }

  function consume(job) {
    var xhr = job.xhr;
    if (!xhr || xhr.status !== 200) return;
    var text = xhr.responseText, nl;
    while ((nl = text.indexOf("\n", job.seen)) >= 0) {
      var line = text.slice(job.seen, nl);
      job.seen = nl + 1;
      if (line.trim()) update(job, JSON.parse(line));
    }
  }

  function update(job, s) {
    if (job !== current || job.ended) return;
    job.snap = s;
    job.id = s.id;
    job.phase = s.state;
    if (s.state === "running" && job.runT0 === null) job.runT0 = performance.now() - 1000 * (s.elapsed_s || 0);
    if (s.note) showNote(s.note + (info.photo_mode ? OR_PHOTO : ""));
    if (s.state === "done") { job.ended = true; finish(job, s); return; }
    if (s.state === "failed") { fail(job, s.error || "Restoring failed on the server."); return; }
    if (s.state === "cancelled") { fail(job, "The server cancelled this restoration. Try again."); return; }
    render(job);
  }

  function render(job) {
    if (job !== current || job.ended) return;
    var s = job.snap, bar = els.bar, text;
    if (job.phase === "uploading") {
      bar.value = job.sent; bar.max = 1;
      text = "Uploading… " + Math.round(100 * job.sent) + "%";
    } else if (!s || job.phase === "waiting") {
      bar.removeAttribute("value");
      text = "Uploaded; checking the picture…";
    } else if (s.state === "queued") {
      bar.removeAttribute("value");
      text = s.position > 1 ? "Waiting: " + s.position + " pictures are ahead of yours." :
        s.position === 1 ? "Waiting for the picture ahead of yours to finish." : "Starting…";
    } else {
      var t = (performance.now() - job.runT0) / 1000, left = null;
      if (s.unit === "face" && s.total === 0) {
        bar.removeAttribute("value");
        text = "Finding faces… · " + secs(t);
      } else if (s.unit === "face" && s.done >= s.total) {
        bar.max = 1; bar.value = 1;
        text = "Putting the photo back together… · " + secs(t);
      } else if (s.total > 1 || s.unit === "face") {
        bar.max = s.total; bar.value = s.done;
        text = "Restoring: " + (s.unit === "face" ? "face " : "tile ") + Math.min(s.done + 1, s.total) + " of " +
          s.total + " · " + secs(t);
        if (s.done > 0) left = t / s.done * (s.total - s.done);
      } else {
        text = "Restoring · " + secs(t);
        if (s.eta_s !== null && s.eta_s !== undefined) {
          var estTotal = s.elapsed_s + s.eta_s;
          left = Math.max(0, estTotal - t);
          bar.max = 1; bar.value = Math.min(0.99, t / Math.max(0.1, estTotal));
        } else {
          bar.removeAttribute("value");
        }
      }
      if (left !== null && left >= 1) text += " · about " + secs(left) + " left";
    }
    els.progressText.textContent = text;
  }

  function stopJob(reason) {
    var job = current;
    current = null;
    setBusy(false);
    if (!job || job.ended) return;
    job.ended = true;
    if (job.xhr) job.xhr.abort();   // closing the stream cancels the job on the server
    if (job.id) {                   // and say so explicitly, in case a proxy keeps the connection
      fetch("/jobs/" + encodeURIComponent(job.id), { method: "DELETE", keepalive: true }).catch(function () {});
    }
  }

  function fail(job, msg) {
    if (job !== current) return;
    job.ended = true;
    if (job.xhr) job.xhr.abort();
    current = null;
    setBusy(false);
    say(msg, true);
  }

  function fetchBlob(url) {
    return fetch(url).then(function (r) {
      if (!r.ok) return r.text().then(function (t) { throw new Error(t.trim() || r.status + " " + r.statusText); });
      return r.blob();
    });
  }

  function finish(job, s) {
    els.progressText.textContent = "Fetching the result…";
    Promise.all([fetchBlob(s.result), fetchBlob(s.bicubic), fetchBlob(s.input)]).then(function (blobs) {
      if (job !== current) return;      // the user moved on: drop what arrived
      var urls = blobs.map(function (b) { return URL.createObjectURL(b); });
      current = null;
      setBusy(false);
      showResult({ result: urls[0], bicubic: urls[1], input: urls[2] }, s);
      say("Done: " + dims(s.input_size[0], s.input_size[1]) + " → " + dims(s.output_size[0], s.output_size[1]) +
          " pixels in " + secs((performance.now() - job.t0) / 1000) + "." + (s.faces ? " " + faceWords(s) : ""));
    }).catch(function (e) {
      job.ended = false;
      fail(job, "The restored picture could not be fetched (" + e.message + "). Try again.");
    });
  }

  // "3 faces restored, 1 too small." in words
  function faceWords(s) {
    var small = 0, capped = 0, other = 0;
    s.faces.forEach(function (f) {
      if (f.restored) return;
      if (f.skipped === "small") small++; else if (f.skipped === "cap") capped++; else other++;
    });
    var extra = [];
    if (small) extra.push(small + " too small");
    if (capped) extra.push(capped + " left out (this server restores at most " + info.max_faces + " per photo)");
    if (other) extra.push(other + " could not be lined up");
    if (!s.faces.length) return "No face found, so the photo is only enlarged.";
    if (!s.faces_restored) return "No face was restored (" + extra.join(", ") + "), so the photo is only enlarged.";
    return [plural(s.faces_restored, "face", "faces") + " restored"].concat(extra).join(", ") + ".";
  }

  els.form.addEventListener("submit", function (e) { e.preventDefault(); start(); });
  els.cancel.addEventListener("click", function () {
    if (!current) return;
    stopJob("cancelled");
    say("Cancelled. Press Restore to start again.");
  });
  window.addEventListener("pagehide", function () {
    // keepalive lets the request outlive the page (navigator.sendBeacon could only POST)
    if (current && current.id && !current.ended) {
      fetch("/jobs/" + encodeURIComponent(current.id), { method: "DELETE", keepalive: true }).catch(function () {});
    }
  });

  // ------------------------------------------------------------------ result and viewer

  function clearResult() {
    els.placeholder.textContent = PLACEHOLDER;
    els.viewer.classList.add("empty");
    els.result.classList.add("empty");
    els.before.removeAttribute("src");
    els.after.removeAttribute("src");
    els.download.hidden = true;
    els.download.removeAttribute("href");
    els.download.removeAttribute("download");
    els.download.removeAttribute("data-job");
    els.sizes.textContent = "";
    els.hint.hidden = true;
    els.viewer.style.height = "";
    els.facesToggle.hidden = true;
    els.boxes.hidden = true;
    els.boxes.textContent = "";
    view.faces = null;
    view.urls = null;
    shown.forEach(function (u) { URL.revokeObjectURL(u); });
    shown = [];
  }

  function showResult(urls, s) {
    clearResult();
    shown = [urls.result, urls.bicubic, urls.input];
    view.urls = urls;
    view.W = s.output_size[0];
    view.H = s.output_size[1];
    view.w = s.input_size[0];
    view.h = s.input_size[1];
    view.scale = s.scale || info.scale;
    view.faces = s.faces || null;
    els.tagAfter.textContent = "facesr ×" + view.scale;
    drawBoxes();
    view.zoom = "fit";
    view.split = 0.5;
    els.split.value = 500;
    setBefore(view.before);
    var loaded = 0;
    function onload() {
      if (++loaded < 2) return;
      els.viewer.classList.remove("empty");
      els.result.classList.remove("empty");
      els.hint.hidden = false;
      layout(true);
      revealResult();
    }
    els.after.onload = onload;
    els.before.onload = onload;
    els.after.src = urls.result;
    els.download.href = urls.result;
    els.download.download = s.download_name;
    els.download.setAttribute("data-job", s.id);
    els.download.textContent = "Download " + s.download_name;
    els.download.hidden = false;
    els.sizes.textContent = "Input " + dims(view.w, view.h) + " → facesr " + dims(view.W, view.H) + " pixels" +
      (view.faces ? " · " + plural(s.faces_restored, "face", "faces") + " restored" : "");
    pressed("zoom", "fit");
  }

  function revealResult() {
    var r = els.viewer.getBoundingClientRect();
    if (r.top < 0 || r.bottom > window.innerHeight) {
      var smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      els.result.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
    }
  }

  function setBefore(which) {
    view.before = which;
    pressed("before", which);
    if (!view.urls) return;
    var wasLoaded = els.before.getAttribute("src");
    els.before.classList.toggle("pixelated", which === "input");
    els.before.alt = which === "input" ? "Before: the input, enlarged by pixel repetition" : "Before: bicubic enlargement";
    els.tagBefore.textContent = which === "input" ? "Input" : "Bicubic ×" + view.scale;
    els.before.src = which === "input" ? view.urls.input : view.urls.bicubic;
    if (wasLoaded) layout(false);
  }

  // one outline per detected face, in output pixels; apply() places them at the current zoom and pan
  function drawBoxes() {
    els.boxes.textContent = "";
    var faces = view.faces || [];
    els.facesToggle.hidden = !faces.length;
    faces.forEach(function (f, i) {
      var d = document.createElement("div");
      d.className = "facebox" + (f.restored ? "" : " skipped");
      var label = document.createElement("span");
      label.textContent = f.restored ? String(i + 1) :
        (f.skipped === "small" ? "too small" : (f.skipped === "cap" ? "over the cap" : "not restored"));
      d.appendChild(label);
      els.boxes.appendChild(d);
    });
    els.boxes.hidden = !faces.length || !els.showFaces.checked;
  }

  function placeBoxes() {
    var faces = view.faces || [], nodes = els.boxes.children;
    for (var i = 0; i < faces.length && i < nodes.length; i++) {
      var b = faces[i].box, st = nodes[i].style;
      st.left = (view.tx + b[0] * view.z) + "px";
      st.top = (view.ty + b[1] * view.z) + "px";
      st.width = Math.max(2, (b[2] - b[0]) * view.z) + "px";
      st.height = Math.max(2, (b[3] - b[1]) * view.z) + "px";
    }
  }

  els.showFaces.addEventListener("change", function () {
    els.boxes.hidden = !(view.faces && view.faces.length) || !els.showFaces.checked;
  });

  function pressed(kind, value) {
    document.querySelectorAll("[data-" + kind + "]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-" + kind) === String(value)));
    });
  }

  function fitScale(vw) {
    // tall enough to see detail, short enough that the toolbar, hint and download stay on screen
    var maxH = Math.max(240, Math.min(window.innerHeight - 260, 900));
    return Math.min(vw / view.W, maxH / view.H);
  }

  // keepCenter: keep the image point under the viewer's centre in place when the zoom changes
  function layout(reset, cx, cy) {
    if (!view.W) return;
    var vw = els.viewer.clientWidth, fit = fitScale(vw);
    var vh = Math.round(view.H * fit);
    els.viewer.style.height = vh + "px";
    var oldZ = view.z;
    var z = view.zoom === "fit" ? fit : Number(view.zoom);
    if (reset) {
      view.tx = (vw - view.W * z) / 2;
      view.ty = (vh - view.H * z) / 2;
    } else {
      if (cx === undefined) { cx = vw / 2; cy = vh / 2; }
      var ix = (cx - view.tx) / oldZ, iy = (cy - view.ty) / oldZ;
      view.tx = cx - ix * z;
      view.ty = cy - iy * z;
    }
    view.z = z;
    view.vw = vw;
    view.vh = vh;
    clampPan();
    apply();
  }

  function clampPan() {
    var w = view.W * view.z, h = view.H * view.z;
    view.tx = w <= view.vw ? (view.vw - w) / 2 : Math.min(0, Math.max(view.vw - w, view.tx));
    view.ty = h <= view.vh ? (view.vh - h) / 2 : Math.min(0, Math.max(view.vh - h, view.ty));
    els.viewer.classList.toggle("zoomed", w > view.vw + 0.5 || h > view.vh + 0.5);
  }

  function apply() {
    var w = view.W * view.z, h = view.H * view.z, t = "translate(" + view.tx + "px," + view.ty + "px)";
    [els.before, els.after].forEach(function (img) {
      img.style.width = w + "px";
      img.style.height = h + "px";
      img.style.transform = t;
    });
    var x = Math.round(view.split * view.vw);
    els.afterLayer.style.clipPath = "inset(0 0 0 " + x + "px)";
    placeBoxes();
    els.handle.style.left = x + "px";
  }

  function setSplitFromX(clientX) {
    var r = els.viewer.getBoundingClientRect();
    view.split = Math.min(1, Math.max(0, (clientX - r.left) / r.width));
    els.split.value = Math.round(view.split * 1000);
    apply();
  }

  var drag = null;
  els.viewer.addEventListener("pointerdown", function (e) {
    if (!view.urls || els.viewer.classList.contains("empty") || e.button > 0) return;
    var onHandle = e.target === els.handle || els.handle.contains(e.target);
    var zoomed = els.viewer.classList.contains("zoomed");
    drag = { mode: onHandle || !zoomed ? "split" : "pan", x: e.clientX, y: e.clientY, id: e.pointerId };
    els.viewer.setPointerCapture(e.pointerId);
    if (drag.mode === "split") setSplitFromX(e.clientX);
    else els.viewer.classList.add("panning");
    e.preventDefault();
  });
  els.viewer.addEventListener("pointermove", function (e) {
    if (!drag || e.pointerId !== drag.id) return;
    if (drag.mode === "split") { setSplitFromX(e.clientX); return; }
    view.tx += e.clientX - drag.x;
    view.ty += e.clientY - drag.y;
    drag.x = e.clientX;
    drag.y = e.clientY;
    clampPan();
    apply();
  });
  function endDrag() { drag = null; els.viewer.classList.remove("panning"); }
  els.viewer.addEventListener("pointerup", endDrag);
  els.viewer.addEventListener("pointercancel", endDrag);
  els.viewer.addEventListener("dblclick", function (e) {
    if (!view.urls) return;
    var r = els.viewer.getBoundingClientRect();
    view.zoom = view.zoom === "fit" ? "1" : "fit";
    pressed("zoom", view.zoom);
    layout(false, e.clientX - r.left, e.clientY - r.top);
  });
  els.split.addEventListener("input", function () { view.split = els.split.value / 1000; apply(); });
  document.querySelectorAll("[data-zoom]").forEach(function (b) {
    b.addEventListener("click", function () {
      view.zoom = b.getAttribute("data-zoom");
      pressed("zoom", view.zoom);
      layout(view.zoom === "fit");
    });
  });
  document.querySelectorAll("[data-before]").forEach(function (b) {
    b.addEventListener("click", function () { setBefore(b.getAttribute("data-before")); });
  });
  window.addEventListener("resize", function () { layout(view.zoom === "fit"); });

  // ------------------------------------------------------------------ start-up

  function loadExample(ex) {
    fetchBlob(ex.url).then(function (blob) {
      pick(new File([blob], "example_" + ex.id + ".png", { type: "image/png" }), { run: true });
    }).catch(function (e) { say("The example could not be loaded (" + e.message + ").", true); });
  }

  fetch("/api/info").then(function (r) { return r.json(); }).then(function (d) {
    info = d;
    els.photoMode.hidden = !d.photo_mode;
    if (d.photo_mode) {
      document.querySelector(".h1-sub").textContent = "restore blurry faces, cropped or in whole photos";
    }
    setMode("face", false);
    els.limits.textContent = "Takes pictures up to " + dims(d.max_side, d.max_side) + " pixels and files up to " +
      kb(d.max_upload_bytes) + "; best with a face cropped to about 128 × 128. ";
    els.tagBefore.textContent = "Bicubic ×" + d.scale;
    els.tagAfter.textContent = "facesr ×" + d.scale;
    view.scale = d.scale;
    (d.examples || []).forEach(function (ex) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "example";
      b.setAttribute("data-example", ex.id);
      var img = document.createElement("img");
      img.src = ex.url;
      img.alt = "";
      img.width = ex.width;
      img.height = ex.height;
      var cap = document.createElement("span");
      cap.textContent = ex.title;
      b.appendChild(img);
      b.appendChild(cap);
      b.addEventListener("click", function () { loadExample(ex); });
      els.examples.appendChild(b);
    });
    document.documentElement.setAttribute("data-ready", "1");
  }).catch(function () {
    say("Cannot reach the facesr server. Is it still running?", true);
  });
})();
