//! Where results go: a file written atomically (a failure leaves whatever the path held), or
//! standard output for `-`. A reader that closes the pipe early (`| head`) ends the output
//! quietly, as for any Unix filter.

use std::io::Write;
use std::path::Path;

use resflow::data::npy;
use resflow::train::checkpoint::AtomicFile;

/// The formats a result file may take, by its extension (`-`: CSV on standard output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Npy,
    Png,
}

impl Format {
    /// The format of `path`, if it is one of `allowed`; the error lists those.
    pub fn of(path: &Path, allowed: &[Format]) -> Result<Format, String> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            _ if path == Path::new("-") => Some(Format::Csv),
            Some("csv") => Some(Format::Csv),
            Some("npy") => Some(Format::Npy),
            Some("png") => Some(Format::Png),
            _ => None,
        };
        format.filter(|f| allowed.contains(f)).ok_or_else(|| {
            let names: Vec<&str> = allowed
                .iter()
                .map(|f| match f {
                    Format::Csv => ".csv (or - for standard output)",
                    Format::Npy => ".npy",
                    Format::Png => ".png",
                })
                .collect();
            format!("--out must end in {}, got {}", names.join(" or "), path.display())
        })
    }
}

/// The stream results are written to.
pub enum Output {
    File(AtomicFile),
    Stdout { out: std::io::BufWriter<std::io::Stdout>, closed: bool },
}

/// What a sink returns once the reader of standard output has gone: stop drawing, no error.
pub const READER_GONE: &str = "the reader of standard output closed it";

impl Output {
    pub fn create(path: &Path) -> Result<Output, String> {
        if path == Path::new("-") {
            return Ok(Output::Stdout { out: std::io::BufWriter::new(std::io::stdout()), closed: false });
        }
        AtomicFile::create(path).map(Output::File).map_err(|e| e.to_string())
    }

    /// Writes `bytes`; an error is a message for the user, or [`READER_GONE`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Output::File(f) => f.write_all(bytes).map_err(|e| e.to_string()),
            Output::Stdout { closed: true, .. } => Err(READER_GONE.into()),
            Output::Stdout { out, closed } => match out.write_all(bytes) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    *closed = true;
                    Err(READER_GONE.into())
                }
                r => r.map_err(|e| format!("cannot write to standard output: {e}")),
            },
        }
    }

    /// The f32 values as an `.npy` body (after [`npy::f32_header`]).
    pub fn write_f32s(&mut self, values: &[f32]) -> Result<(), String> {
        let mut bytes = Vec::with_capacity(4 * values.len());
        npy::write_f32s(&mut bytes, values).map_err(|e| e.to_string())?;
        self.write(&bytes)
    }

    /// Completes the output: renames the file into place, or flushes standard output.
    pub fn finish(self) -> Result<(), String> {
        match self {
            Output::File(f) => f.commit().map_err(|e| e.to_string()),
            Output::Stdout { closed: true, .. } => Ok(()),
            Output::Stdout { mut out, .. } => match out.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.map_err(|e| format!("cannot write to standard output: {e}")),
            },
        }
    }
}

/// `x,y` lines of 2-D points.
pub fn csv_lines(points: &[f32]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(points.len() * 12);
    for p in points.chunks_exact(2) {
        let _ = writeln!(text, "{},{}", p[0], p[1]);
    }
    text
}
