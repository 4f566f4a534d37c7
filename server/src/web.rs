//! The draw-a-digit page on the REST port: `/` is `web/index.html`, `/web/<file>` the other
//! files of `web/` (compiled into the binary, nothing fetched from elsewhere), and
//! `/page/models` the models and their available versions, for the page's picker.

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// A page file by the path it is served at, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let name = if path == "/" { "index.html" } else { path.strip_prefix("/web/")? };
    let (_, bytes) = WEB_ASSETS.iter().find(|(n, _)| *n == name)?;
    let kind = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    Some((kind, bytes))
}
