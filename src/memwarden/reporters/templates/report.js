/* memwarden report: draws the charts from the JSON block, then writes what it did into
   #render-status (data-render-status), which the tests and the benchmark read. */
(function () {
  "use strict";
  var started = (window.performance && performance.now) ? performance.now() : Date.now();
  var status = { rendered: false, charts: [], errors: [], ms: null };
  window.addEventListener("error", function (e) { status.errors.push(String(e.message || e)); });
  var origError = console.error;
  console.error = function () {
    status.errors.push(Array.prototype.map.call(arguments, String).join(" "));
    if (origError) { origError.apply(console, arguments); }
  };

  var COLORS = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#ad1457",
    "#455a64", "#9e9d24"];
  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

  function fmtBytes(v, decimals) {
    if (v == null) { return "–"; }
    var sign = v < 0 ? "-" : "", x = Math.abs(v), i = 0;
    while (x >= 1024 && i < UNITS.length - 1) { x /= 1024; i++; }
    var d = decimals == null ? (x >= 100 ? 0 : 1) : decimals;
    return sign + (i === 0 ? x.toFixed(0) : x.toFixed(d)) + " " + UNITS[i];
  }
  // axis labels: as few decimals as keep neighbouring ticks apart (1.1 GiB, 1.1 GiB ... reads as nothing)
  function axisValues(fmt, unit) {
    return function (u, splits) {
      if (unit !== "bytes") { return splits.map(function (v) { return fmt(v); }); }
      for (var d = 1; d <= 4; d++) {
        var out = splits.map(function (v) { return fmtBytes(v, d); }), seen = {}, unique = true;
        for (var k = 0; k < out.length; k++) { if (seen[out[k]]) { unique = false; break; } seen[out[k]] = 1; }
        if (unique) { return out; }
      }
      return out;
    };
  }
  function fmtCount(v) {
    if (v == null) { return "–"; }
    var a = Math.abs(v);
    if (a >= 1e9) { return (v / 1e9).toFixed(1) + " G"; }
    if (a >= 1e6) { return (v / 1e6).toFixed(1) + " M"; }
    if (a >= 1e4) { return (v / 1e3).toFixed(0) + " k"; }
    return String(Math.round(v * 100) / 100);
  }
  function fmtSeconds(v) {
    if (v == null) { return "–"; }
    return v < 1 ? (v * 1000).toFixed(1) + " ms" : v.toFixed(2) + " s";
  }
  function formatter(unit) {
    return unit === "bytes" ? fmtBytes : unit === "seconds" ? fmtSeconds : fmtCount;
  }

  function marksPlugin(marks, t0) {
    return {
      hooks: {
        draw: [function (u) {
          u.memwardenDraws = (u.memwardenDraws || 0) + 1;
          if (!marks || !marks.length) { return; }
          var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
          var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
          ctx.save();
          for (var i = 0; i < marks.length; i++) {
            var m = marks[i];
            var x = u.valToPos(t0 + m.t, "x", true);
            if (m.kind === "window") {
              var x2 = u.valToPos(t0 + m.t_end, "x", true);
              var a = Math.max(left, x), b = Math.min(right, Math.max(x2, x + 2));
              if (b > a) { ctx.fillStyle = "rgba(120, 144, 255, 0.18)"; ctx.fillRect(a, top, b - a, height); }
            } else if (x >= left && x <= right) {
              ctx.strokeStyle = "#c62828"; ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
              ctx.setLineDash([6, 4]);
              ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
            }
          }
          ctx.restore();
        }]
      }
    };
  }

  function widthOf(el) {
    var w = el.clientWidth || (el.parentNode && el.parentNode.clientWidth) || 600;
    return Math.max(300, Math.floor(w));
  }

  var plots = [];

  function drawChart(spec, t0, marks) {
    var el = document.getElementById("chart-" + spec.id);
    if (!el) { status.errors.push("no element for chart " + spec.id); return; }
    var fmt = formatter(spec.unit);
    var xs = new Array(spec.x.length);
    for (var i = 0; i < spec.x.length; i++) { xs[i] = t0 + spec.x[i]; }
    var data = [xs].concat(spec.ys);
    var series = [{}];
    for (var j = 0; j < spec.labels.length; j++) {
      series.push({
        label: spec.labels[j],
        stroke: COLORS[j % COLORS.length],
        width: 1.5,
        spanGaps: true,
        value: function (u, v) { return fmt(v); }
      });
    }
    var opts = {
      width: widthOf(el),
      height: 220,
      scales: { x: { time: true } },
      series: series,
      axes: [
        {},
        { values: axisValues(fmt, spec.unit), size: 80 }
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      plugins: [marksPlugin(marks, t0)]
    };
    var plot = new uPlot(opts, data, el);
    plots.push({ el: el, plot: plot, spec: spec });
  }

  try {
    var report = JSON.parse(document.getElementById("memwarden-data").textContent);
    var t0 = report.t0;
    if (report.overlay) {
      try { drawChart(report.overlay, t0, []); } catch (e) { status.errors.push("overlay: " + e); }
    }
    for (var w = 0; w < report.workers.length; w++) {
      var worker = report.workers[w];
      for (var c = 0; c < worker.charts.length; c++) {
        try { drawChart(worker.charts[c], t0, worker.marks); }
        catch (e) {
          status.errors.push(worker.charts[c].id + ": " + e);
          var el = document.getElementById("chart-" + worker.charts[c].id);
          if (el) { el.insertAdjacentHTML("beforeend", "<p class=\"chart-error\">this chart could not be drawn</p>"); }
        }
      }
    }
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        for (var k = 0; k < plots.length; k++) {
          plots[k].plot.setSize({ width: widthOf(plots[k].el), height: 220 });
        }
      }, 100);
    });
  } catch (e) {
    status.errors.push(String(e));
  }

  // how many pixels the chart painted (every 4th pixel sampled): a blank canvas paints none
  function inked(canvas) {
    try {
      var px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data, n = 0;
      for (var i = 3; i < px.length; i += 16) { if (px[i] !== 0) { n++; } }
      return n;
    } catch (e) { return -1; }
  }

  // uPlot sizes and draws its canvases in a microtask after construction: measure once that is done
  function finish() {
    for (var k = 0; k < plots.length; k++) {
      var p = plots[k], canvas = p.el.querySelector("canvas");
      var rect = canvas ? canvas.getBoundingClientRect() : { width: 0, height: 0 };
      status.charts.push({ id: p.spec.id, width: Math.round(rect.width), height: Math.round(rect.height),
        draws: p.plot.memwardenDraws || 0, inked: inked(canvas), points: p.spec.x.length, series: p.spec.labels.length });
    }
    // the headline and each verdict badge: on screen, with non-zero size
    status.visible = {};
    var texts = document.querySelectorAll("#headline, [data-verdict]");
    for (var t = 0; t < texts.length; t++) {
      var r = texts[t].getBoundingClientRect();
      var key = texts[t].id || ("verdict:" + texts[t].getAttribute("data-verdict"));
      status.visible[key] = r.width > 0 && r.height > 0 && getComputedStyle(texts[t]).visibility !== "hidden";
    }
    status.rendered = status.errors.length === 0;
    var ended = (window.performance && performance.now) ? performance.now() : Date.now();
    status.ms = Math.round(ended - started);  // this script: parse the data, draw every chart
    status.page_ms = Math.round(ended);  // from navigation start: loading the page included
    document.getElementById("render-status").setAttribute("data-render-status", JSON.stringify(status));
  }
  setTimeout(finish, 0);
})();
