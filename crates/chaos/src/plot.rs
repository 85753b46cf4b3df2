//! The pictures of a nemesis run, read at a glance: the latency of every
//! operation over time (a dot per operation, log scale) and the throughput
//! over time (operations per second, a line per outcome), each with the
//! faults shaded and labelled. PNG files drawn into a buffer by plotters
//! and encoded by the png crate; text uses a TrueType font read at run
//! time (`RAFT_KV_CHAOS_FONT`, else DejaVu Sans or Liberation Sans from
//! the usual places). Without one, the pictures are drawn without text.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::Fault;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Certainly had no effect.
    Failed,
    /// No reply, or an error that does not rule out an effect.
    Unknown,
}

impl Outcome {
    /// Every outcome, in the order they are drawn (the rarer on top).
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Unknown, Outcome::Failed];

    /// Its name in legends.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }

    /// Its colour in the pictures.
    fn color(self) -> RGBColor {
        match self {
            Outcome::Ok => RGBColor(0x1f, 0x77, 0xb4),
            Outcome::Failed => RGBColor(0xd6, 0x27, 0x28),
            Outcome::Unknown => RGBColor(0xff, 0x8c, 0x00),
        }
    }
}

/// One operation as the pictures show it: when a client sent it, when it
/// got its answer or gave up (µs since the start of the run), and how it
/// ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// When it was sent.
    pub call: u64,
    /// When the client had its answer or gave up.
    pub ret: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// The size of each picture, in pixels.
pub const SIZE: (u32, u32) = (1000, 420);

/// The font family the text is drawn with, once a font is registered.
const FAMILY: &str = "raft-kv-chaos";

/// Where a font is looked for when `RAFT_KV_CHAOS_FONT` names none.
const FONTS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the first font found (once); whether there is one. Prints
/// where to find one if not.
pub fn font() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let named = std::env::var_os("RAFT_KV_CHAOS_FONT").map(PathBuf::from);
        let found = named
            .into_iter()
            .chain(FONTS.iter().map(PathBuf::from))
            .filter_map(|p| std::fs::read(p).ok())
            .any(|bytes| {
                // Registered fonts live as long as the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok()
            });
        if !found {
            println!(
                "no font for the plots' text (set RAFT_KV_CHAOS_FONT to a .ttf file, or install \
                 fonts-dejavu-core): drawing them without text"
            );
        }
        found
    })
}

/// Draws the pictures of the run `name` into `dir` (made if need be), as
/// `<name>-latency.png` and `<name>-throughput.png`, with text if a font
/// is found; their paths.
pub fn draw(
    dir: &Path,
    name: &str,
    ops: &[Timing],
    faults: &[Fault],
) -> Result<Vec<PathBuf>, String> {
    draw_with(dir, name, ops, faults, font())
}

/// [`draw`], with text or without.
fn draw_with(
    dir: &Path,
    name: &str,
    ops: &[Timing],
    faults: &[Fault],
    text: bool,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let latency = dir.join(format!("{name}-latency.png"));
    let throughput = dir.join(format!("{name}-throughput.png"));
    let plot = Plot {
        name,
        ops,
        faults,
        text,
        end: end(ops, faults),
    };
    save(&latency, |area| plot.latency(area))?;
    save(&throughput, |area| plot.throughput(area))?;
    Ok(vec![latency, throughput])
}

/// The end of the time axis, in seconds: the last answer or heal.
fn end(ops: &[Timing], faults: &[Fault]) -> f64 {
    let last = ops
        .iter()
        .map(|o| o.ret.max(o.call))
        .chain(faults.iter().map(|f| f.healed))
        .max()
        .unwrap_or(0);
    seconds(last).max(0.1)
}

/// Microseconds as seconds.
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The width of the throughput buckets for a run of `end` seconds: 250 ms
/// up to a minute, then wider, for at most 400 buckets.
pub fn bucket(end: f64) -> f64 {
    (end / 400.0).max(0.25)
}

/// Operations per second that ended in each bucket of `width` seconds, per
/// outcome (in the order of [`Outcome::ALL`]), up to `end`.
pub fn throughput(ops: &[Timing], width: f64, end: f64) -> Vec<[f64; 3]> {
    let n = (end / width).ceil().max(1.0) as usize;
    let mut counts = vec![[0.0; 3]; n];
    for o in ops {
        let i = ((seconds(o.ret) / width) as usize).min(n - 1);
        let j = Outcome::ALL
            .iter()
            .position(|&k| k == o.outcome)
            .expect("every outcome is in ALL");
        counts[i][j] += 1.0 / width;
    }
    counts
}

/// Draws into an RGB buffer with `f` and writes it to `path` as a PNG.
fn save(
    path: &Path,
    f: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), String> {
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        area.fill(&WHITE).map_err(|e| e.to_string())?;
        f(&area)?;
        area.present().map_err(|e| e.to_string())?;
    }
    let file = File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut png = png::Encoder::new(BufWriter::new(file), w, h);
    png.set_color(png::ColorType::Rgb);
    png.set_depth(png::BitDepth::Eight);
    png.set_compression(png::Compression::High);
    png.write_header()
        .and_then(|mut out| out.write_image_data(&rgb))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The light colour that shades faults of a kind (the first word of their
/// description: kill, pause, partition...).
fn shade(what: &str) -> RGBColor {
    const SHADES: [RGBColor; 4] = [
        RGBColor(0xf8, 0xd8, 0xd5),
        RGBColor(0xfb, 0xea, 0xc4),
        RGBColor(0xd5, 0xea, 0xd0),
        RGBColor(0xdf, 0xda, 0xf2),
    ];
    let kind = what.split_whitespace().next().unwrap_or_default();
    let i = match kind {
        "kill" => 0,
        "pause" => 1,
        "partition" | "isolate" => 2,
        _ => 3,
    };
    SHADES[i]
}

/// What the pictures of one run are drawn from.
struct Plot<'a> {
    name: &'a str,
    ops: &'a [Timing],
    faults: &'a [Fault],
    text: bool,
    end: f64,
}

/// The margin around the chart, in pixels.
const MARGIN: u32 = 12;
/// The height of the title and legend above the chart.
const HEADER: u32 = 40;
/// The width of the y axis's labels.
const Y_LABELS: u32 = 64;

/// How an outcome is shown in the legend.
#[derive(Clone, Copy)]
enum Marker {
    Dot,
    Line,
}

/// A chart on a bitmap, with time in seconds on x.
type Chart<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

impl Plot<'_> {
    fn style(&self, size: f64) -> TextStyle<'static> {
        (FAMILY, size).into_font().color(&BLACK)
    }

    /// A chart with room for the header and the axes' labels if there is
    /// text.
    fn chart<'a, 'b, Y: AsRangedCoord<Value = f64>>(
        &self,
        area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
        y: Y,
    ) -> Result<Chart<'a, 'b, Y::CoordDescType>, String> {
        let mut builder = ChartBuilder::on(area);
        builder.margin(MARGIN);
        if self.text {
            builder
                .margin_top(HEADER)
                .x_label_area_size(40)
                .y_label_area_size(Y_LABELS);
        }
        builder
            .build_cartesian_2d(0.0..self.end, y)
            .map_err(|e| e.to_string())
    }

    /// The title on the left above the chart and the legend on the right:
    /// each outcome's marker, name and count.
    fn header(
        &self,
        root: &DrawingArea<BitMapBackend, Shift>,
        title: &str,
        marker: Marker,
    ) -> Result<(), String> {
        if !self.text {
            return Ok(());
        }
        let title_style = self.style(17.0);
        root.draw(&Text::new(
            format!("{}: {title}", self.name),
            (MARGIN as i32 + Y_LABELS as i32, 10),
            &title_style,
        ))
        .map_err(|e| e.to_string())?;
        let style = self.style(13.0);
        let items: Vec<(Outcome, String)> = Outcome::ALL
            .into_iter()
            .map(|o| (o, format!("{} ({})", o.name(), self.count(o))))
            .collect();
        let mut widths = Vec::new();
        for (_, text) in &items {
            let (w, _) = root
                .estimate_text_size(text, &style)
                .map_err(|e| e.to_string())?;
            widths.push(w as i32 + 18 + 16);
        }
        let mut x = SIZE.0 as i32 - MARGIN as i32 - widths.iter().sum::<i32>() + 16;
        let y = 22;
        for ((outcome, text), w) in items.iter().zip(widths) {
            let color = outcome.color();
            match marker {
                Marker::Dot => root.draw(&Circle::new((x + 5, y), 4, color.filled())),
                Marker::Line => root.draw(&PathElement::new(
                    [(x - 2, y), (x + 12, y)],
                    color.stroke_width(2),
                )),
            }
            .map_err(|e| e.to_string())?;
            root.draw(&Text::new(
                text.as_str(),
                (x + 18, y),
                style.pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(|e| e.to_string())?;
            x += w;
        }
        Ok(())
    }

    /// Shades the faults, then draws the grid and the axes.
    fn background<Y: Ranged<ValueType = f64> + ValueFormatter<f64>>(
        &self,
        chart: &mut Chart<'_, '_, Y>,
        y_desc: &str,
        y_label: impl Fn(&f64) -> String,
    ) -> Result<(), String> {
        let (bottom, top) = {
            let r = chart.y_range();
            (r.start, r.end)
        };
        chart
            .draw_series(self.faults.iter().map(|f| {
                Rectangle::new(
                    [(seconds(f.at), bottom), (seconds(f.healed), top)],
                    shade(&f.what).filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        let whole = self.end >= 5.0;
        let x_label = |v: &f64| {
            if whole {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12));
        if self.text {
            mesh.x_desc("seconds since the start")
                .x_label_formatter(&x_label)
                .y_desc(y_desc)
                .label_style(self.style(13.0))
                .axis_desc_style(self.style(14.0))
                .y_label_formatter(&y_label);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| e.to_string())
    }

    /// Labels each fault at the top of its shading, on one of three rows,
    /// leaving out those that would overlap.
    fn fault_labels<Y: Ranged<ValueType = f64>>(
        &self,
        root: &DrawingArea<BitMapBackend, Shift>,
        chart: &Chart<'_, '_, Y>,
    ) -> Result<(), String> {
        if !self.text {
            return Ok(());
        }
        let top = chart.y_range().end;
        let style = self.style(12.0).color(&RGBColor(0x30, 0x30, 0x30));
        let mut free = [i32::MIN; 3];
        for f in self.faults {
            let (x, y) = chart.backend_coord(&(seconds(f.at), top));
            let (w, h) = root
                .estimate_text_size(&f.what, &style)
                .map_err(|e| e.to_string())?;
            let Some(row) = free.iter().position(|&end| end < x) else {
                continue;
            };
            free[row] = x + w as i32 + 8;
            let at = (x + 3, y + 3 + row as i32 * (h as i32 + 3));
            root.draw(&Text::new(f.what.as_str(), at, &style))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// How many operations ended so.
    fn count(&self, outcome: Outcome) -> usize {
        self.ops.iter().filter(|o| o.outcome == outcome).count()
    }

    /// Latency of every operation against the time it was sent.
    fn latency(&self, area: &DrawingArea<BitMapBackend, Shift>) -> Result<(), String> {
        let ms = |o: &Timing| (o.ret.saturating_sub(o.call) as f64 / 1e3).max(0.01);
        let (lo, hi) = self
            .ops
            .iter()
            .map(ms)
            .fold((f64::MAX, 0.01f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let lo = if lo == f64::MAX { 0.01 } else { lo };
        let mut chart = self.chart(area, (lo / 1.5..hi * 2.0).log_scale())?;
        self.background(&mut chart, "latency (ms, log scale)", |v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })?;
        for outcome in Outcome::ALL {
            let color = outcome.color();
            let dots = self
                .ops
                .iter()
                .filter(|o| o.outcome == outcome)
                .map(|o| Circle::new((seconds(o.call), ms(o)), 2, color.mix(0.6).filled()));
            chart.draw_series(dots).map_err(|e| e.to_string())?;
        }
        self.fault_labels(area, &chart)?;
        self.header(area, "latency of every operation", Marker::Dot)
    }

    /// Operations per second over time, a line per outcome.
    fn throughput(&self, area: &DrawingArea<BitMapBackend, Shift>) -> Result<(), String> {
        let width = bucket(self.end);
        let rates = throughput(self.ops, width, self.end);
        let top = rates
            .iter()
            .flat_map(|r| r.iter().copied())
            .fold(1.0f64, f64::max);
        let title = format!("operations per second ({:.0} ms buckets)", width * 1e3);
        let mut chart = self.chart(area, 0.0..top * 1.15)?;
        self.background(&mut chart, "operations per second", |v| format!("{v:.0}"))?;
        for (j, outcome) in Outcome::ALL.into_iter().enumerate() {
            let color = outcome.color();
            let points = rates
                .iter()
                .enumerate()
                .map(|(i, r)| ((i as f64 + 0.5) * width, r[j]));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?;
        }
        self.fault_labels(area, &chart)?;
        self.header(area, &title, Marker::Line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten seconds of operations, one every millisecond: fast (1 ms) except
    /// during a fault from 3 s to 5 s (200 ms, and every tenth unknown);
    /// every hundredth fails.
    fn history() -> (Vec<Timing>, Vec<Fault>) {
        let ops = (0..10_000u64)
            .map(|i| {
                let call = i * 1_000;
                let during = (3_000_000..5_000_000).contains(&call);
                let outcome = match i {
                    _ if i % 100 == 0 => Outcome::Failed,
                    _ if during && i % 10 == 0 => Outcome::Unknown,
                    _ => Outcome::Ok,
                };
                let latency = if during { 200_000 } else { 1_000 };
                Timing {
                    call,
                    ret: call + latency,
                    outcome,
                }
            })
            .collect();
        let faults = vec![Fault {
            what: "kill n1 (leader)".into(),
            at: 3_000_000,
            healed: 5_000_000,
        }];
        (ops, faults)
    }

    /// The width, height and RGB pixels of a PNG file, after checking its
    /// signature and header.
    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let bytes = std::fs::read(path).expect("the picture was written");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        assert_eq!(&bytes[12..16], b"IHDR");
        let (w, h) = (
            u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
            u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
        );
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .expect("a valid header");
        let mut rgb = vec![0; reader.output_buffer_size().expect("a sane size")];
        let info = reader.next_frame(&mut rgb).expect("valid image data");
        assert_eq!((info.width, info.height), (w, h));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (w, h, rgb)
    }

    /// The columns of the image that have a pixel of `color`.
    fn columns_with(w: u32, rgb: &[u8], color: RGBColor) -> Vec<u32> {
        let mut columns: Vec<u32> = rgb
            .chunks(3)
            .enumerate()
            .filter(|(_, p)| *p == [color.0, color.1, color.2])
            .map(|(i, _)| i as u32 % w)
            .collect();
        columns.sort_unstable();
        columns.dedup();
        columns
    }

    fn pictures_shade_the_fault_and_nothing_else(text: bool) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (ops, faults) = history();
        let paths = draw_with(dir.path(), "kill-leader", &ops, &faults, text).expect("drawn");
        assert_eq!(
            paths,
            [
                dir.path().join("kill-leader-latency.png"),
                dir.path().join("kill-leader-throughput.png")
            ]
        );
        for path in &paths {
            let (w, h, rgb) = decode(path);
            assert_eq!((w, h), SIZE);
            // The fault is 2 s of 10: about a fifth of the plotting area,
            // which is most of the width, in one block.
            let shaded = columns_with(w, &rgb, shade(&faults[0].what));
            assert!(!shaded.is_empty(), "{}: no shading", path.display());
            let (first, last) = (shaded[0], shaded[shaded.len() - 1]);
            let span = (last - first + 1) as f64 / w as f64;
            assert!(
                (0.15..0.21).contains(&span),
                "{}: shading spans {span} of the width",
                path.display()
            );
            assert!(
                shaded.len() as u32 > (last - first) * 9 / 10,
                "{}: shading has gaps",
                path.display()
            );
            // Each outcome is drawn.
            for outcome in Outcome::ALL {
                let c = outcome.color();
                let blended = |p: &[u8]| {
                    (0..3).all(|k| p[k].abs_diff([c.0, c.1, c.2][k]) < 90)
                        && p[0].abs_diff(p[1]).max(p[1].abs_diff(p[2])) > 40
                };
                assert!(
                    rgb.chunks(3).any(blended),
                    "{}: no {} in the picture",
                    path.display(),
                    outcome.name()
                );
            }
        }
    }

    #[test]
    fn pictures_with_text_shade_the_fault_and_show_every_outcome() {
        if !font() {
            eprintln!("no font here: only the pictures without text are drawn");
            return;
        }
        pictures_shade_the_fault_and_nothing_else(true);
    }

    #[test]
    fn pictures_without_a_font_are_drawn_without_text() {
        pictures_shade_the_fault_and_nothing_else(false);
    }

    #[test]
    fn throughput_counts_operations_per_second_by_when_they_ended() {
        let op = |ret, outcome| Timing {
            call: 0,
            ret,
            outcome,
        };
        let ops = [
            op(100_000, Outcome::Ok),
            op(200_000, Outcome::Ok),
            op(300_000, Outcome::Failed),
            op(600_000, Outcome::Unknown),
            // Past the end: in the last bucket.
            op(2_000_000, Outcome::Ok),
        ];
        let rates = throughput(&ops, 0.25, 1.0);
        assert_eq!(
            rates,
            vec![
                [8.0, 0.0, 0.0],
                [0.0, 0.0, 4.0],
                [0.0, 4.0, 0.0],
                [4.0, 0.0, 0.0]
            ]
        );
        assert_eq!(bucket(10.0), 0.25);
        assert_eq!(bucket(1800.0), 4.5);
    }
}
