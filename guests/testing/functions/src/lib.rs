//! A component exporting plain functions over most WIT types, for the
//! plain-function (MCP) tests.

wit_bindgen::generate!({ path: "wit" });

use exports::test::functions::counters::{Guest as Counters, GuestCounter};
use exports::test::functions::shapes::{Guest as Shapes, Point, Shape, Style, Unit};

struct Functions;

impl Guest for Functions {
    fn add(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    fn greet(name: String, times: Option<u8>) -> Vec<String> {
        (0..times.unwrap_or(1))
            .map(|_| format!("hello, {name}"))
            .collect()
    }

    fn divide(a: f64, b: f64) -> Result<f64, String> {
        if b == 0.0 {
            Err("division by zero".into())
        } else {
            Ok(a / b)
        }
    }

    fn spin() -> u64 {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn save(name: String, text: String) -> Result<(), String> {
        std::fs::write(format!("/out/{name}"), text).map_err(|e| e.to_string())
    }
}

impl Shapes for Functions {
    fn area(s: Shape, u: Option<Unit>) -> f64 {
        let mm2 = match s {
            Shape::Circle(r) => std::f64::consts::PI * r * r,
            Shape::Rect((w, h)) => w * h,
            Shape::Dot => 0.0,
        };
        let per = match u.unwrap_or(Unit::Mm) {
            Unit::Mm => 1.0,
            Unit::Cm => 100.0,
            Unit::Inch => 645.16,
        };
        mm2 / per
    }

    fn centroid(points: Vec<Point>) -> Result<Point, String> {
        if points.is_empty() {
            return Err("no points".into());
        }
        let n = points.len() as f64;
        Ok(Point {
            x: points.iter().map(|p| p.x).sum::<f64>() / n,
            y: points.iter().map(|p| p.y).sum::<f64>() / n,
        })
    }

    fn label(p: Point, styles: Style, tag: char) -> String {
        let mut out = format!("{tag}({}, {})", p.x, p.y);
        if styles & Style::BOLD == Style::BOLD {
            out = format!("**{out}**");
        }
        if styles & Style::ITALIC == Style::ITALIC {
            out = format!("_{out}_");
        }
        out
    }

    fn split(n: u64, d: u64) -> (u64, u64) {
        (n / d.max(1), n % d.max(1))
    }
}

struct Counter(std::cell::Cell<u32>);

impl GuestCounter for Counter {
    fn new() -> Self {
        Self(std::cell::Cell::new(0))
    }

    fn bump(&self) -> u32 {
        self.0.set(self.0.get() + 1);
        self.0.get()
    }
}

impl Counters for Functions {
    type Counter = Counter;

    fn make() -> exports::test::functions::counters::Counter {
        exports::test::functions::counters::Counter::new(Counter::new())
    }
}

export!(Functions);
