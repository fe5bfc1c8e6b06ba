// Draws the market report's charts from the JSON the server embedded in the page
// (api/market_page.py). Withheld figures are gaps, never zeros. Each chart records what
// it plotted in `data-plotted`, so that a test can compare it with the API's figures.
(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var quarterly = report.granularity === "QUARTER";

  function label(period) {
    var year = period.start.slice(0, 4);
    var month = Number(period.start.slice(5, 7));
    return quarterly ? year + " Q" + (Math.floor((month - 1) / 3) + 1) : period.start.slice(0, 7);
  }

  function value(figures, measure, breakdown) {
    for (var i = 0; i < figures.length; i++) {
      var f = figures[i];
      if (f.measure === measure && (breakdown === undefined || f.breakdown === breakdown)) {
        return f.withheld ? null : f.value;
      }
    }
    return null;
  }

  var x = report.periods.map(label);

  function series(name, measure, breakdown, extra) {
    var trace = {
      name: name,
      x: x,
      y: report.periods.map(function (p) { return value(p.figures, measure, breakdown); })
    };
    return Object.assign(trace, extra || {});
  }

  var layout = {
    margin: { t: 10, r: 10, b: 40, l: 50 },
    height: 280,
    legend: { orientation: "h" },
    font: { family: "system-ui, sans-serif", size: 12 }
  };
  var config = { displayModeBar: false, responsive: true };

  var charts = {
    "hours": [
      series("Planned", "HOURS_PLANNED", null, { type: "bar" }),
      series("Delivered", "HOURS_DELIVERED", null, { type: "bar" }),
      series("Missed", "HOURS_MISSED", null, { type: "bar" })
    ],
    "fill-rate": [
      series("Fill rate", "COVER_FILL_RATE", null, { type: "scatter", mode: "lines+markers" })
    ],
    "continuity": [
      series("Different PAs a month (median)", "MEDIAN_DISTINCT_PAS_PER_28_DAYS", null,
             { type: "scatter", mode: "lines+markers" }),
      series("Visits by regular PAs (share)", "REGULAR_PA_SHARE", null,
             { type: "scatter", mode: "lines+markers", yaxis: "y2" })
    ],
    "pay": [
      series("Median pay", "MEDIAN_HOURLY_PAY", null, { type: "scatter", mode: "lines+markers" }),
      series("Lower quartile", "LOWER_QUARTILE_HOURLY_PAY", null,
             { type: "scatter", mode: "lines+markers" }),
      series("National Living Wage", "NATIONAL_LIVING_WAGE", undefined,
             { type: "scatter", mode: "lines", line: { dash: "dot" } }),
      series("Real Living Wage", "REAL_LIVING_WAGE", undefined,
             { type: "scatter", mode: "lines", line: { dash: "dash" } })
    ],
    "capacity": [{
      name: "Now",
      type: "bar",
      x: ["Free PA hours, next 4 weeks", "Referrals waiting"],
      y: [value(report.capacity, "FREE_PA_HOURS_NEXT_4_WEEKS"),
          value(report.capacity, "REFERRALS_WAITING")]
    }]
  };
  var extraLayout = {
    "fill-rate": { yaxis: { range: [0, 1], tickformat: ".0%" } },
    "continuity": {
      yaxis2: { overlaying: "y", side: "right", range: [0, 1], tickformat: ".0%" },
      margin: { t: 10, r: 50, b: 40, l: 50 }
    },
    "pay": { yaxis: { tickprefix: "£" } },
    "hours": { barmode: "group" }
  };

  var drawn = Object.keys(charts).map(function (name) {
    var element = document.getElementById("chart-" + name);
    var traces = charts[name];
    return Plotly.newPlot(element, traces, Object.assign({}, layout, extraLayout[name] || {}), config)
      .then(function () {
        element.setAttribute("data-plotted", JSON.stringify(traces.map(function (t) {
          return { name: t.name, x: t.x, y: t.y };
        })));
      });
  });
  Promise.all(drawn).then(function () {
    document.body.setAttribute("data-charts-ready", String(drawn.length));
  });
})();
