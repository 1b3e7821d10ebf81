//! What every plot of the project shares (feature `plot`): the bundled font, so plots render
//! the same on machines without fonts. Drawing failures are [`Error::Plot`](crate::Error::Plot).

use std::sync::Once;

use plotters::style::FontStyle;

static FONT: Once = Once::new();

/// Registers the bundled font as `sans-serif` for plotters, once per process.
pub fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        let registered = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
        assert!(registered.is_ok(), "the bundled font is valid");
    });
}
