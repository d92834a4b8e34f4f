//! Copies `www/` into the build directory with a gzip sibling (`name.gz`) for each text file over
//! 1 KiB, so the embedded site is served compressed (`src/files.rs` picks the sibling by
//! `Accept-Encoding`) without committing generated files.

use std::io::Write;
use std::path::Path;

fn compressible(name: &str) -> bool {
    [
        ".html",
        ".css",
        ".js",
        ".svg",
        ".json",
        ".webmanifest",
        ".txt",
        ".md",
        ".map",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let src = entry.path();
        let dst = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy(&src, &dst)?;
            continue;
        }
        let data = std::fs::read(&src)?;
        std::fs::write(&dst, &data)?;
        let name = name.to_string_lossy();
        if compressible(&name) && data.len() > 1024 {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&data)?;
            let packed = gz.finish()?;
            if packed.len() < data.len() {
                std::fs::write(to.join(format!("{name}.gz")), packed)?;
            }
        }
    }
    Ok(())
}

fn main() {
    println!("cargo:rerun-if-changed=www");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let dest = Path::new(&out).join("www");
    let _ = std::fs::remove_dir_all(&dest);
    if let Err(e) = copy(Path::new("www"), &dest) {
        panic!("cannot prepare the embedded site files from www/: {e}");
    }
}
