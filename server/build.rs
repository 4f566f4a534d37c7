//! Embeds the draw-a-digit page (the files at the top of `web/`) in the binary: writes a table
//! of (name, bytes) to OUT_DIR/web_assets.rs.

use std::path::Path;

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    println!("cargo:rerun-if-changed={}", web.display());
    let mut entries = Vec::new();
    if let Ok(dir) = std::fs::read_dir(&web) {
        for entry in dir.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let served = ["html", "js", "css", "png", "svg", "ico"];
            if path.is_file() && path.extension().is_some_and(|e| served.contains(&e.to_string_lossy().as_ref())) {
                println!("cargo:rerun-if-changed={}", path.display());
                entries.push(format!("    ({name:?}, include_bytes!({:?})),", path.canonicalize().unwrap().display().to_string()));
            }
        }
    }
    entries.sort();
    let table =
        format!("/// The page's files: (name, contents).\npub const WEB_ASSETS: &[(&str, &[u8])] = &[\n{}\n];\n", entries.join("\n"));
    std::fs::write(Path::new(&std::env::var("OUT_DIR").unwrap()).join("web_assets.rs"), table).unwrap();
}
