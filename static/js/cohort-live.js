// The cohort page while the cohort runs: the progress bar and the gallery follow the worker.
// Each poll of gallery.json brings the progress and the images that passed screening since the
// cursor of the previous answer; the cursor stays a few seconds behind (see generation.selectors),
// so an image may come twice and is added once. When the cohort has finished, the page reloads once
// for the charts, the privacy summary and the export form; not while the viewer is open, though:
// then it reloads when the viewer is closed.
(function () {
  "use strict";
  const box = document.getElementById("progress");
  const gallery = document.getElementById("gallery");
  if (!box || !gallery || gallery.dataset.finished === "true") return;
  const limit = parseInt(gallery.dataset.limit, 10) || 120;
  let cursor = gallery.dataset.cursor || "";
  let failures = 0;

  const set = function (id, value) {
    const element = document.getElementById(id);
    if (element) element.textContent = value;
  };

  function shown() {
    return gallery.querySelectorAll("figure[data-id]");
  }

  function figureFor(item) {
    const figure = document.createElement("figure");
    figure.dataset.index = item.index;
    figure.dataset.id = item.id;
    const link = document.createElement("a");
    link.className = "gallery-open";
    link.href = item.png;
    link.dataset.details = item.details;
    link.title = "Open image " + item.index + " in the viewer";
    const img = document.createElement("img");
    img.src = item.png;
    img.alt = "Synthetic image " + item.index;
    img.loading = "lazy";
    img.style.aspectRatio = item.width + "/" + item.height;
    link.appendChild(img);
    const caption = document.createElement("figcaption");
    caption.append("#" + item.index + " · " + item.caption, document.createElement("br"), item.prompt);
    figure.append(link, caption);
    return figure;
  }

  function addImages(items) {
    items.forEach(function (item) {
      if (gallery.querySelector('figure[data-id="' + item.id + '"]')) return;
      const figures = Array.from(shown());
      const after = figures.find(function (f) { return parseInt(f.dataset.index, 10) > item.index; });
      // The gallery shows the first `limit` patients by index, as the page itself does.
      if (figures.length >= limit && !after) return;
      gallery.insertBefore(figureFor(item), after || null);
      if (shown().length > limit) gallery.removeChild(gallery.lastElementChild);
    });
    const empty = document.getElementById("gallery-empty");
    if (empty) empty.hidden = shown().length > 0;
  }

  function showProgress(data) {
    document.getElementById("progress-bar").style.width = data.percent + "%";
    box.querySelector(".progress").setAttribute("aria-valuenow", data.percent);
    set("progress-passed", data.passed);
    set("progress-failed", data.failed);
    set("progress-screening", data.screening);
    set("progress-flagged", data.flagged);
    set("progress-eta", data.eta_seconds === null ? "—" : data.eta_seconds + " s");
    set("gallery-count", data.passed);
    const more = document.getElementById("gallery-more");
    if (more) more.hidden = data.passed <= limit;
    const notice = document.getElementById("cohort-notice");
    notice.textContent = data.notice || "";
    notice.hidden = !data.notice;
    const status = document.getElementById("cohort-status");
    status.textContent = data.status.charAt(0).toUpperCase() + data.status.slice(1);
    status.className = "badge " + data.status;
  }

  function finish() {
    // #progress keeps data-finished="false" until the reloaded page says otherwise.
    gallery.dataset.finished = "true";
    const viewer = document.getElementById("viewer");
    if (viewer && viewer.open) {
      viewer.addEventListener("close", function () { window.location.reload(); }, {once: true});
    } else {
      window.location.reload();
    }
  }

  async function poll() {
    let data;
    try {
      const url = gallery.dataset.url + "?after=" + encodeURIComponent(cursor);
      const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (!response.ok) throw new Error(String(response.status));
      data = await response.json();
      failures = 0;
    } catch (e) {
      failures += 1;
      window.setTimeout(poll, Math.min(5000 * failures, 30000));
      return;
    }
    addImages(data.images);
    cursor = data.cursor;
    showProgress(data.progress);
    if (data.progress.finished) { finish(); } else { window.setTimeout(poll, 1500); }
  }
  window.setTimeout(poll, 1000);
})();
