// Draws a report of the task index (report.py: the task-name and worker pages) into the elements of
// templates/_summary.html. `filter` is the Tasks page's query for the same tasks ("name=..." or
// "worker=..."); `missing` the report's absence (no task changed in the window) as a sentence.
// Needs tt (base.html) and ttChart (linechart.js).
const ttSummary = (() => {
  const ms = v => v === null || v === undefined ? "" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms";
  const body = (id, rows, cols, empty) => {
    document.querySelector(`#${id} tbody`).innerHTML = rows.length ? rows.join("") : `<tr><td colspan="${cols}" class="muted">${empty}</td></tr>`;
  };
  function draw(d, filter, missing) {
    const e = tt.esc;
    document.getElementById("list-link").href = "/tasks?" + filter;
    if (!d) {
      document.getElementById("scan").textContent = missing;
      body("errors", [], 4, "no failures"); body("recent", [], 9, "none");
      return;
    }
    document.getElementById("scan").textContent = `${d.scanned} tasks read` +
      (d.truncated ? `, stopped at ${d.scan_limit}: the figures cover the newest ones only` : "");
    for (const tile of document.querySelectorAll("#summary .tile")) {
      const v = d.summary[tile.dataset.k];
      tile.querySelector(".v").textContent = tile.dataset.k.endsWith("_ms") ? (ms(v) || "–") : String(v);
    }
    document.getElementById("states").textContent = Object.entries(d.states).map(([s, n]) => `${s}: ${n}`).join(" · ");
    const s = d.series, t = s.at_ms;
    ttChart.line(document.getElementById("chart-finished"), {times: t, series: [
      {label: "succeeded", values: s.succeeded, color: "#17612c"}, {label: "failed", values: s.failed, color: "#8a1c1c"}]});
    ttChart.line(document.getElementById("chart-times"), {times: t, unit: "ms", series: [
      {label: "run p50", values: s.run_p50_ms, color: "#1b4a9e"}, {label: "run p95", values: s.run_p95_ms, color: "#6a3db8"},
      {label: "wait p50", values: s.wait_p50_ms, color: "#b06f00"}, {label: "wait p95", values: s.wait_p95_ms, color: "#d4a017"}]});
    body("errors", d.errors.map(x => `<tr data-error="${e(x.type)}">
      <td><a href="/tasks?${filter}&error=${encodeURIComponent(x.type)}">${e(x.type)}</a></td>
      <td class="num">${x.count}</td><td>${e(x.message)}</td>
      <td><a href="/tasks/${encodeURIComponent(x.task)}">${e(x.task)}</a> ${tt.time(x.at)}</td></tr>`), 4, "no failures");
    body("recent", d.recent.map(x => `<tr data-task="${e(x.id)}" data-state="${e(x.state)}">
      <td><a href="/tasks/${encodeURIComponent(x.id)}">${e(x.id)}</a></td>
      <td><a href="/names?name=${encodeURIComponent(x.name)}">${e(x.name)}</a></td><td>${tt.state(x.state)}</td>
      <td class="num">${x.attempt}</td><td>${x.worker ? `<a href="/workers?id=${encodeURIComponent(x.worker)}">${e(x.worker)}</a>` : ""}</td>
      <td class="num wait">${ms(x.wait_ms)}</td><td class="num run">${ms(x.run_ms)}</td>
      <td>${x.error ? e(x.error.type + ": " + x.error.message) : ""}</td><td>${tt.time(x.updated)}</td></tr>`), 9, "none");
  }
  // The report's page: GET `url` now and every `every` seconds; 404 shows the answer's error in #missing.
  function live(url, every, render) {
    const missing = document.getElementById("missing");
    let tick = 0;
    window.ttRefresh = tt.live(async () => {
      if (tick++ % every) return;
      const r = await fetch(url, {cache: "no-store"});
      if (r.status === 401) { location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search)); }
      const d = await r.json();
      if (r.status === 404) {
        missing.textContent = d.error; missing.classList.add("shown"); document.body.dataset.found = "no";
        for (const t of document.querySelectorAll("main table tbody")) t.innerHTML = "";
        return;
      }
      if (!r.ok) throw new Error(d.error || r.statusText);
      missing.classList.remove("shown");
      render(d);
      document.body.dataset.found = "yes";
    });
  }
  return {draw, live, ms, rows: body};
})();
