// The cohort page's image viewer: any gallery image opened large in a dialog, drawn on a canvas.
// Wheel zooms about the pointer, drag pans, right-drag (or the sliders) sets window and level on the
// image's own pixel values (the stored PNGs are 8-bit grayscale: 0-255), keys ← → step through the
// gallery. The side panel is filled from the image's JSON with textContent only: prompts are user
// text and never become markup.
(function () {
  "use strict";
  const dialog = document.getElementById("viewer");
  const gallery = document.getElementById("gallery");
  if (!dialog || !gallery || typeof dialog.showModal !== "function") return;
  const canvas = document.getElementById("viewer-canvas");
  const context = canvas.getContext("2d");
  const $ = function (id) { return document.getElementById(id); };
  const levelInput = $("viewer-level");
  const windowInput = $("viewer-window");
  const invertInput = $("viewer-invert");

  const MIN_ZOOM = 0.05;
  const MAX_ZOOM = 40;
  const state = {
    link: null, source: null, windowed: null, pixels: null, width: 0, height: 0,
    zoom: 1, x: 0, y: 0, level: 128, window: 256, invert: false, request: 0,
  };

  // --- Pixels and window/level ------------------------------------------------------------------
  function applyWindow() {
    if (!state.pixels) return;
    const low = state.level - state.window / 2;
    const lut = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v += 1) {
      const out = Math.round(((v - low) / state.window) * 255);
      lut[v] = state.invert ? 255 - Math.min(255, Math.max(0, out)) : out;
    }
    const image = state.windowed.getContext("2d").createImageData(state.width, state.height);
    const data = image.data;
    const gray = state.pixels;
    for (let i = 0, j = 0; i < gray.length; i += 1, j += 4) {
      const value = lut[gray[i]];
      data[j] = value; data[j + 1] = value; data[j + 2] = value; data[j + 3] = 255;
    }
    state.windowed.getContext("2d").putImageData(image, 0, 0);
    levelInput.value = String(state.level);
    windowInput.value = String(state.window);
    $("viewer-level-value").textContent = String(state.level);
    $("viewer-window-value").textContent = String(state.window);
    canvas.dataset.level = String(state.level);
    canvas.dataset.window = String(state.window);
    draw();
  }

  function setWindow(level, width) {
    state.level = Math.round(Math.min(255, Math.max(0, level)));
    state.window = Math.round(Math.min(512, Math.max(1, width)));
    applyWindow();
  }

  // --- Drawing, zoom and pan ---------------------------------------------------------------------
  function resizeCanvas() {
    const ratio = window.devicePixelRatio || 1;
    const box = canvas.getBoundingClientRect();
    canvas.width = Math.max(1, Math.round(box.width * ratio));
    canvas.height = Math.max(1, Math.round(box.height * ratio));
  }

  function draw() {
    const ratio = window.devicePixelRatio || 1;
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    if (!state.windowed) return;
    context.setTransform(state.zoom * ratio, 0, 0, state.zoom * ratio, state.x * ratio, state.y * ratio);
    // Enlarged pixels stay sharp: a radiograph's texture should not be invented by smoothing.
    context.imageSmoothingEnabled = state.zoom < 2;
    context.drawImage(state.windowed, 0, 0);
    canvas.dataset.zoom = state.zoom.toFixed(4);
    canvas.dataset.panX = state.x.toFixed(1);
    canvas.dataset.panY = state.y.toFixed(1);
  }

  function fit() {
    if (!state.width) return;
    const box = canvas.getBoundingClientRect();
    state.zoom = Math.min(box.width / state.width, box.height / state.height);
    state.x = (box.width - state.width * state.zoom) / 2;
    state.y = (box.height - state.height * state.zoom) / 2;
    draw();
  }

  function zoomAbout(factor, cx, cy) {
    const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, state.zoom * factor));
    // The image point under (cx, cy) stays under it.
    state.x = cx - ((cx - state.x) * zoom) / state.zoom;
    state.y = cy - ((cy - state.y) * zoom) / state.zoom;
    state.zoom = zoom;
    draw();
  }

  function zoomAboutCentre(factor) {
    const box = canvas.getBoundingClientRect();
    zoomAbout(factor, box.width / 2, box.height / 2);
  }

  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    const box = canvas.getBoundingClientRect();
    zoomAbout(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  }, {passive: false});

  let drag = null;
  canvas.addEventListener("contextmenu", function (event) { event.preventDefault(); });
  canvas.addEventListener("pointerdown", function (event) {
    drag = {button: event.button, x: event.clientX, y: event.clientY, panX: state.x, panY: state.y,
      level: state.level, window: state.window};
    canvas.setPointerCapture(event.pointerId);
    canvas.classList.add("dragging");
  });
  canvas.addEventListener("pointermove", function (event) {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (drag.button === 2) {
      setWindow(drag.level - dy, drag.window + dx);
    } else {
      state.x = drag.panX + dx;
      state.y = drag.panY + dy;
      draw();
    }
  });
  function endDrag(event) {
    if (!drag) return;
    drag = null;
    canvas.classList.remove("dragging");
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
  }
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);

  // --- The side panel ----------------------------------------------------------------------------
  function fillList(element, items) {
    element.replaceChildren();
    items.forEach(function (text) {
      const li = document.createElement("li");
      li.textContent = text;
      element.appendChild(li);
    });
  }

  function fillPairs(element, pairs) {
    element.replaceChildren();
    Object.keys(pairs).forEach(function (key) {
      const value = pairs[key];
      if (value === null || value === undefined || value === "") return;
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      element.append(dt, dd);
    });
  }

  function showDetails(details) {
    $("viewer-title").textContent = "Image #" + details.index;
    $("viewer-caption").textContent = details.caption;
    $("viewer-prompt").textContent = details.prompt;
    fillList($("viewer-labels"), details.labels.length ? details.labels : ["No finding requested"]);
    fillPairs($("viewer-demographics"), details.demographics);
    const verdict = details.screening;
    $("viewer-screening").textContent = verdict
      ? verdict.label + (verdict.score !== null ? " · score " + verdict.score.toFixed(3) : "") +
        (verdict.threshold !== null ? " (threshold " + verdict.threshold.toFixed(3) + ")" : "") +
        (verdict.review ? " · " + verdict.review : "")
      : "No screening record.";
    const qc = details.quality_control || {};
    $("viewer-qc-section").hidden = Object.keys(qc).length === 0;
    fillPairs($("viewer-qc"), qc);
    $("viewer-seed").textContent = String(details.seed);
    $("viewer-attempt").textContent = String(details.attempt);
    const png = $("viewer-download-png");
    png.href = details.png_download;
    png.setAttribute("download", "image-" + details.index + ".png");
    const dicom = $("viewer-download-dicom");
    const note = $("viewer-dicom-note");
    if (details.dicom) {
      dicom.href = details.dicom;
      dicom.hidden = false;
      note.hidden = true;
    } else {
      dicom.removeAttribute("href");
      dicom.hidden = true;
      note.textContent = details.dicom_unavailable || "";
      note.hidden = !details.dicom_unavailable;
    }
  }

  // --- Opening an image --------------------------------------------------------------------------
  function load(link) {
    const request = ++state.request;
    state.link = link;
    dialog.dataset.loaded = "false";
    $("viewer-title").textContent = "Loading…";
    const picture = new Image();
    const pixelsReady = new Promise(function (resolve, reject) {
      picture.onload = resolve;
      picture.onerror = function () { reject(new Error("The image could not be loaded.")); };
    });
    picture.src = link.getAttribute("href");
    const detailsReady = fetch(link.dataset.details, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) throw new Error("This image is not available (" + response.status + ").");
        return response.json();
      });
    Promise.all([pixelsReady, detailsReady]).then(function (results) {
      if (request !== state.request) return;  // another image was opened meanwhile
      state.width = picture.naturalWidth;
      state.height = picture.naturalHeight;
      const source = document.createElement("canvas");
      source.width = state.width;
      source.height = state.height;
      const sourceContext = source.getContext("2d", {willReadFrequently: true});
      sourceContext.drawImage(picture, 0, 0);
      const rgba = sourceContext.getImageData(0, 0, state.width, state.height).data;
      state.pixels = new Uint8Array(state.width * state.height);
      for (let i = 0, j = 0; i < state.pixels.length; i += 1, j += 4) state.pixels[i] = rgba[j];
      state.windowed = document.createElement("canvas");
      state.windowed.width = state.width;
      state.windowed.height = state.height;
      showDetails(results[1]);
      resizeCanvas();
      fit();
      setWindow(128, 256);
      dialog.dataset.loaded = "true";
      dialog.dataset.imageId = String(results[1].id);
    }).catch(function (error) {
      if (request !== state.request) return;
      $("viewer-title").textContent = error.message;
      dialog.dataset.loaded = "error";
    });
  }

  function links() {
    return Array.from(gallery.querySelectorAll("a.gallery-open"));
  }

  function step(offset) {
    const all = links();
    const at = all.indexOf(state.link);
    const next = all[at + offset];
    if (next) load(next);
  }

  gallery.addEventListener("click", function (event) {
    const link = event.target.closest("a.gallery-open");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    if (!dialog.open) dialog.showModal();
    load(link);
  });

  $("viewer-close").addEventListener("click", function () { dialog.close(); });
  $("viewer-zoom-in").addEventListener("click", function () { zoomAboutCentre(1.25); });
  $("viewer-zoom-out").addEventListener("click", function () { zoomAboutCentre(0.8); });
  $("viewer-fit").addEventListener("click", fit);
  $("viewer-actual").addEventListener("click", function () { zoomAboutCentre(1 / state.zoom); });
  $("viewer-prev").addEventListener("click", function () { step(-1); });
  $("viewer-next").addEventListener("click", function () { step(1); });
  $("viewer-reset").addEventListener("click", function () {
    invertInput.checked = false;
    state.invert = false;
    setWindow(128, 256);
    fit();
  });
  levelInput.addEventListener("input", function () { setWindow(parseInt(levelInput.value, 10), state.window); });
  windowInput.addEventListener("input", function () { setWindow(state.level, parseInt(windowInput.value, 10)); });
  invertInput.addEventListener("change", function () { state.invert = invertInput.checked; applyWindow(); });
  dialog.addEventListener("keydown", function (event) {
    if (event.target.tagName === "INPUT") return;
    if (event.key === "ArrowLeft") { step(-1); event.preventDefault(); }
    if (event.key === "ArrowRight") { step(1); event.preventDefault(); }
    if (event.key === "+" || event.key === "=") zoomAboutCentre(1.25);
    if (event.key === "-") zoomAboutCentre(0.8);
  });
  window.addEventListener("resize", function () {
    if (!dialog.open) return;
    resizeCanvas();
    draw();
  });
})();
