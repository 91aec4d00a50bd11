// The Usage page's chart: uPlot (static/vendor) draws the numbers the page's table already lists.
// The Credits / Messages buttons switch the chart in place (without JavaScript they submit the
// filter form with their choice); the address keeps the choice, so a reload shows the same view.
(() => {
  "use strict";
  const source = document.getElementById("usage-data");
  const box = document.getElementById("usage-chart");
  if (!source || !box || typeof window.uPlot === "undefined") return;
  const uPlot = window.uPlot;
  const data = JSON.parse(source.textContent);
  const buttons = Array.from(document.querySelectorAll("[data-metric]"));
  const apply = document.querySelector("[data-apply]");
  const names = { credits: "Credits", messages: "Messages" };
  const numbers = new Intl.NumberFormat("en-US");
  let metric = buttons.find((b) => b.getAttribute("aria-pressed") === "true")?.dataset.metric || "credits";
  let chart = null;

  function height() { return box.clientWidth < 500 ? 220 : 300; }

  // Bars are centred on each bucket's start; the x range keeps half a bucket free at either end.
  function xRange() {
    const xs = data.x;
    const step = xs.length > 1 ? Math.min(...xs.slice(1).map((x, i) => x - xs[i])) : 86400;
    return [xs[0] - step / 2, xs[xs.length - 1] + step / 2];
  }

  const monthDay = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  const monthYear = new Intl.DateTimeFormat("en-US", { month: "short", year: "numeric", timeZone: "UTC" });

  // Ticks on bucket starts only (a week's Monday, a month's 1st), thinned to fit the width; the year
  // is shown under the first tick and wherever it changes.
  function splits(u) {
    const room = Math.max(2, Math.floor(u.bbox.width / devicePixelRatio / 64));
    const every = Math.ceil(data.x.length / room);
    return data.x.filter((_x, i) => i % every === 0);
  }

  function tickLabels(_u, ticks) {
    return ticks.map((ts, i) => {
      const when = new Date(ts * 1e3);
      if (data.interval === "month") return monthYear.format(when);
      const year = when.getUTCFullYear();
      const shown = i === 0 || new Date(ticks[i - 1] * 1e3).getUTCFullYear() !== year;
      return monthDay.format(when) + (shown ? `\n${year}` : "");
    });
  }

  function options() {
    const labelAt = (ts) => data.labels[data.x.indexOf(ts)] ?? "";
    return {
      width: box.clientWidth,
      height: height(),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      padding: [12, 8, 0, 0],
      cursor: { drag: { x: false, y: false }, points: { show: false }, y: false },
      legend: { show: true, live: true },
      scales: {
        x: { time: true, range: xRange },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 10] },
      },
      axes: [
        { stroke: "#5b6474", grid: { show: false }, ticks: { stroke: "#e3e6ee" }, font: "12px system-ui, sans-serif",
          splits, values: tickLabels, size: 48 },
        {
          stroke: "#5b6474", grid: { stroke: "#eef0f5" }, ticks: { show: false }, size: 56,
          font: "12px system-ui, sans-serif", values: (_u, ticks) => ticks.map((v) => numbers.format(v)),
        },
      ],
      series: [
        { label: data.interval === "day" ? "Day" : data.interval === "week" ? "Week" : "Month",
          value: (_u, ts) => (ts == null ? data.range : labelAt(ts)) },
        {
          label: names[metric], stroke: "#4338ca", fill: "rgba(79, 70, 229, .78)", width: 0,
          paths: uPlot.paths.bars({ size: [0.7, 64], gap: 1 }), points: { show: false },
          // Away from the bars the legend reads the range and its total; over a bar, that bucket.
          value: (_u, v) => numbers.format(v == null ? data.totals[metric] : v),
        },
      ],
    };
  }

  function draw() {
    if (chart) chart.destroy();
    box.hidden = false;
    chart = new uPlot(options(), [data.x, data[metric]], box);
    box.setAttribute("aria-label", box.getAttribute("aria-label").replace(/^Bar chart of \w+/, `Bar chart of ${metric}`));
  }

  function choose(next) {
    metric = next;
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.metric === metric));
    if (apply) apply.value = metric;
    const caption = document.querySelector(".usage-figure figcaption");
    if (caption && /^\s*(Credits|Messages) per/.test(caption.textContent)) {
      caption.textContent = caption.textContent.replace(/(Credits|Messages) per/, `${names[metric]} per`);
    }
    const url = new URL(window.location.href);
    url.searchParams.set("metric", metric);
    window.history.replaceState(null, "", url);
    draw();
  }

  for (const b of buttons) {
    b.addEventListener("click", (event) => { event.preventDefault(); choose(b.dataset.metric); });
  }
  let resizing = 0;
  window.addEventListener("resize", () => {
    cancelAnimationFrame(resizing);
    resizing = requestAnimationFrame(() => chart && chart.setSize({ width: box.clientWidth, height: height() }));
  });

  draw();
  // The chart now carries the numbers; the table stays one click away (and is what screen readers get).
  document.querySelector("[data-usage-table]")?.removeAttribute("open");
})();
