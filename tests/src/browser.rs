//! A real browser looking at the HTML reports: headless Chromium (Debian)
//! takes a screenshot, and the test reads its pixels.

use std::path::Path;
use std::process::Command;

/// A screenshot: RGB pixels, row by row.
pub struct Screenshot {
    pub width: usize,
    pub height: usize,
    rgb: Vec<u8>,
}

impl Screenshot {
    /// Pixels of exactly this colour in the rows `top..bottom`.
    pub fn count(&self, rgb: [u8; 3], top: usize, bottom: usize) -> usize {
        (top..bottom.min(self.height))
            .flat_map(|y| (0..self.width).map(move |x| (y * self.width + x) * 3))
            .filter(|&i| self.rgb[i..i + 3] == rgb)
            .count()
    }
}

/// Opens `page` in headless Chromium at `width` x `height` and returns the
/// screenshot; `None` when Chromium is not installed and the interop tests
/// are skipped (see [`crate::interop_tool`]). The PNG is left beside the
/// page for a person to look at.
pub fn screenshot(page: &Path, width: u32, height: u32) -> Option<Screenshot> {
    shoot(
        &format!("file://{}", page.display()),
        &page.with_extension("png"),
        width,
        height,
    )
}

/// The same for a live page at `url` (its scripts get five seconds of
/// virtual time to fetch and draw), saved to `png`.
pub fn screenshot_url(url: &str, png: &Path, width: u32, height: u32) -> Option<Screenshot> {
    shoot(url, png, width, height)
}

fn shoot(url: &str, png: &Path, width: u32, height: u32) -> Option<Screenshot> {
    let chromium = crate::interop_tool("chromium")?;
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        // Root in CI: Chromium refuses its sandbox as root.
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let rgb: Vec<u8> = buf[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Some(Screenshot {
        width: info.width as usize,
        height: info.height as usize,
        rgb,
    })
}
