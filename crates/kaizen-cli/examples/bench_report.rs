//! Turns the figures the issue-12 benchmarks append to `target/tmp/kaizen-bench/figures.tsv`
//! into BENCHMARKS.md's tables (between its `<!-- figures:begin -->` / `<!-- figures:end -->`
//! markers) and the SVG chart of the growth curves. Run by `scripts/bench` after the benches.
//!
//! ```sh
//! cargo run -p kaizen-cli --example bench_report -- [FIGURES.tsv] [--write BENCHMARKS.md] [--svg docs/benchmarks-growth.svg]
//! ```
//!
//! The latest line for a (bench, figure, size) wins, so a partial re-run updates only its own.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// size → (value, unit)
type BySize = BTreeMap<u64, (f64, String)>;
/// (bench, figure) → its values by size
type Figures = BTreeMap<(String, String), BySize>;

fn parse(text: &str) -> Figures {
    let mut out: Figures = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [bench, name, size, value, unit] = f[..] else {
            continue;
        };
        let (Ok(size), Ok(value)) = (size.parse::<u64>(), value.parse::<f64>()) else {
            continue;
        };
        if !value.is_finite() {
            continue;
        }
        out.entry((bench.to_string(), name.to_string()))
            .or_default()
            .insert(size, (value, unit.to_string()));
    }
    out
}

fn fmt_value(v: f64, unit: &str) -> String {
    let n = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    match unit {
        "x" => format!("{n}×"),
        "n" => n,
        u => format!("{n} {u}"),
    }
}

/// The size label: the operation bench packs days and signals into one number.
fn size_label(bench: &str, size: u64) -> String {
    if bench == "operation" {
        format!("{}d × {}", size / 1000, size % 1000)
    } else {
        size.to_string()
    }
}

fn tables(figs: &Figures) -> String {
    let mut md = String::new();
    let mut benches: Vec<&String> = figs.keys().map(|(b, _)| b).collect();
    benches.dedup();
    for bench in benches {
        let rows: Vec<(&String, &BySize)> = figs
            .iter()
            .filter(|((b, _), _)| b == bench)
            .map(|((_, n), v)| (n, v))
            .collect();
        let mut sizes: Vec<u64> = rows.iter().flat_map(|(_, v)| v.keys().copied()).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let _ = writeln!(md, "\n### `{bench}`\n");
        let _ = write!(md, "| figure |");
        for s in &sizes {
            let _ = write!(md, " {} |", size_label(bench, *s));
        }
        let _ = writeln!(md, " growth per ×10 of size |");
        let _ = write!(md, "|---|");
        for _ in &sizes {
            let _ = write!(md, "---|");
        }
        let _ = writeln!(md, "---|");
        for (name, by_size) in rows {
            let _ = write!(md, "| {name} |");
            for s in &sizes {
                match by_size.get(s) {
                    Some((v, u)) => {
                        let _ = write!(md, " {} |", fmt_value(*v, u));
                    }
                    None => {
                        let _ = write!(md, " – |");
                    }
                }
            }
            let _ = writeln!(md, " {} |", growth(by_size));
        }
    }
    md
}

/// For each pair of consecutive sizes: "×k work → ×r" normalised to a tenfold step.
fn growth(by_size: &BySize) -> String {
    let pts: Vec<(u64, f64)> = by_size.iter().map(|(s, (v, _))| (*s, *v)).collect();
    let mut parts = Vec::new();
    for w in pts.windows(2) {
        let ((s0, v0), (s1, v1)) = (w[0], w[1]);
        if s0 == 0 || v0 <= 0.0 || v1 <= 0.0 || s1 <= s0 {
            continue;
        }
        let k = s1 as f64 / s0 as f64;
        let r = v1 / v0;
        // Exponent of the power law through both points, then its value at ×10.
        let per10 = 10f64.powf(r.ln() / k.ln());
        if (k - 10.0).abs() < 1e-9 {
            parts.push(format!("×10 → ×{r:.2}"));
        } else {
            parts.push(format!("×{k:.0} → ×{r:.2} (×10 → ×{per10:.2})"));
        }
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join("; ")
    }
}

/// Log-log chart of every time figure measured at two sizes or more, each normalised to its
/// smallest size, with the linear reference.
fn svg(figs: &Figures) -> String {
    let series: Vec<(String, Vec<(f64, f64)>)> = figs
        .iter()
        .filter(|(_, v)| v.len() >= 2 && v.values().all(|(_, u)| u == "ms"))
        .filter(|((b, n), _)| b != "operation" || n == "sim_wall")
        .filter(|((_, n), _)| !n.ends_with("_worst"))
        .filter_map(|((b, n), v)| {
            let (&s0, &(v0, _)) = v.iter().next()?;
            if v0 <= 0.0 || s0 == 0 {
                return None;
            }
            let pts = v
                .iter()
                .filter(|(_, (x, _))| *x > 0.0)
                .map(|(s, (x, _))| (*s as f64 / s0 as f64, x / v0))
                .collect();
            Some((format!("{b}: {n}"), pts))
        })
        .collect();
    let (w, h, l, r, t, b) = (860.0, 520.0, 70.0, 330.0, 30.0, 60.0);
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(10.0f64, f64::max);
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(xmax, f64::max);
    let ymin = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.5f64, f64::min);
    let (lx0, lx1, ly0, ly1) = (0.0, xmax.log10(), ymin.log10(), ymax.log10());
    let px = |x: f64| l + (x.log10() - lx0) / (lx1 - lx0).max(1e-9) * (w - l - r);
    let py = |y: f64| h - b - (y.log10() - ly0) / (ly1 - ly0).max(1e-9) * (h - t - b);
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    ];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{l}" y="18" font-size="13">Growth: time relative to the smallest size (log-log); dashed: linear</text>"#
    );
    // Axes and decade grid.
    let _ = writeln!(
        s,
        r#"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="black"/>"#,
        h - b,
        w - r,
        h - b,
        h - b
    );
    let mut d = 1.0f64;
    while d <= xmax * 1.0001 {
        let x = px(d);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">×{d}</text>"##,
            h - b,
            h - b + 16.0
        );
        d *= 10.0;
    }
    let mut d = 10f64.powf(ly0.floor());
    while d <= ymax * 1.0001 {
        if d >= ymin * 0.9999 {
            let y = py(d);
            let _ = writeln!(
                s,
                r##"<line x1="{l}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">×{d}</text>"##,
                w - r,
                l - 6.0,
                y + 4.0
            );
        }
        d *= 10.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">work (size) relative to the smallest</text>"#,
        (l + w - r) / 2.0,
        h - 20.0
    );
    let _ = writeln!(
        s,
        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black" stroke-dasharray="4 4"/>"#,
        px(1.0),
        py(1.0),
        px(xmax.min(ymax)),
        py(xmax.min(ymax))
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (x, y) in pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                px(*x),
                py(*y)
            );
        }
        let ly = t + 14.0 * i as f64 + 10.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            w - r + 10.0,
            w - r + 30.0,
            w - r + 35.0,
            ly + 4.0,
            name.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    s.push_str("</svg>\n");
    s
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let mut input = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/tmp/kaizen-bench/figures.tsv"
    )
    .to_string();
    let (mut write, mut svg_out) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--write" => write = args.next(),
            "--svg" => svg_out = args.next(),
            _ => input = a,
        }
    }
    let text = match std::fs::read_to_string(&input) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench_report: cannot read {input}: {e} (run scripts/bench first)");
            return std::process::ExitCode::from(1);
        }
    };
    let figs = parse(&text);
    let md = tables(&figs);
    match write {
        Some(path) => {
            let doc = match std::fs::read_to_string(&path) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("bench_report: cannot read {path}: {e}");
                    return std::process::ExitCode::from(1);
                }
            };
            let (begin, end) = ("<!-- figures:begin -->", "<!-- figures:end -->");
            let (Some(i), Some(j)) = (doc.find(begin), doc.find(end)) else {
                eprintln!("bench_report: {path} has no {begin} … {end} markers");
                return std::process::ExitCode::from(1);
            };
            if j < i {
                eprintln!("bench_report: {path}: markers out of order");
                return std::process::ExitCode::from(1);
            }
            let new = format!("{}{begin}\n{md}\n{}", &doc[..i], &doc[j..]);
            if let Err(e) = std::fs::write(&path, new) {
                eprintln!("bench_report: cannot write {path}: {e}");
                return std::process::ExitCode::from(1);
            }
            eprintln!("bench_report: wrote the figures into {path}");
        }
        None => print!("{md}"),
    }
    if let Some(path) = svg_out {
        if let Err(e) = std::fs::write(&path, svg(&figs)) {
            eprintln!("bench_report: cannot write {path}: {e}");
            return std::process::ExitCode::from(1);
        }
        eprintln!("bench_report: wrote {path}");
    }
    std::process::ExitCode::SUCCESS
}
