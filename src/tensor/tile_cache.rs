//! The on-disk cache of probed tile configurations: one small text file per adapter key under
//! the user's cache directory (`$XDG_CACHE_HOME/resflow/`, else `~/.cache/resflow/`). Reads
//! that fail or find anything unexpected return `None` (the caller probes again); writes go
//! to a temporary file renamed into place, so a reader never sees half a file, and a write
//! that fails leaves nothing behind.

use std::path::{Path, PathBuf};

use super::tile_config::{TileConfig, Tiles};

/// First line of a cache file; a file of another format is ignored (and rewritten).
const HEADER: &str = "resflow tile configs v1";

/// The cache directory from the environment lookup `var`: `$XDG_CACHE_HOME/resflow` when that
/// is an absolute path (the XDG rule), else `$HOME/.cache/resflow`.
pub fn cache_dir(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let xdg = var("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let base = xdg.or_else(|| var("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("resflow"))
}

/// The file for `key` in `dir`: named by a hash of the key (adapter names hold any
/// characters), the key itself written inside and checked on reading.
pub fn cache_file(dir: &Path, key: &str) -> PathBuf {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    dir.join(format!("tiles-{hash:016x}.txt"))
}

/// The configuration cached for `key` in `dir`, if a well-formed file for exactly that key is
/// there.
pub fn read(dir: &Path, key: &str) -> Option<TileConfig> {
    let text = std::fs::read_to_string(cache_file(dir, key)).ok()?;
    parse(&text, key)
}

fn parse(text: &str, key: &str) -> Option<TileConfig> {
    let mut lines = text.lines();
    if lines.next()? != HEADER || lines.next()?.strip_prefix("key=")? != key {
        return None;
    }
    let mut value = |name: &str| Tiles::parse(lines.next()?.strip_prefix(name)?.strip_prefix('=')?);
    let config = TileConfig { matmul: value("matmul")?, conv: value("conv")? };
    lines.next().is_none().then_some(config)
}

/// Writes `config` for `key` into `dir` (created if missing) through a temporary file and a
/// rename. Errors are returned for the caller to ignore: the cache is only a shortcut.
pub fn write(dir: &Path, key: &str, config: TileConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = cache_file(dir, key);
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let text = format!("{HEADER}\nkey={key}\nmatmul={}\nconv={}\n", config.matmul.name(), config.conv.name());
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(table: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n| table.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_cache_dir_follows_xdg_then_home() {
        let both = [("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")];
        assert_eq!(cache_dir(lookup(&both)), Some(PathBuf::from("/x/cache/resflow")));
        let relative = [("XDG_CACHE_HOME", "cache"), ("HOME", "/home/u")];
        assert_eq!(cache_dir(lookup(&relative)), Some(PathBuf::from("/home/u/.cache/resflow")));
        assert_eq!(cache_dir(lookup(&[])), None);
    }

    #[test]
    fn files_parse_only_for_their_key_and_format() {
        let ok = format!("{HEADER}\nkey=k\nmatmul=128\nconv=64\n");
        assert_eq!(parse(&ok, "k"), Some(TileConfig { matmul: Tiles::Large, conv: Tiles::Small }));
        assert_eq!(parse(&ok, "other"), None);
        for bad in [
            "".to_string(),
            format!("{HEADER}\nkey=k\nmatmul=128\n"),
            format!("{HEADER}\nkey=k\nmatmul=96\nconv=64\n"),
            format!("{HEADER}\nkey=k\nconv=64\nmatmul=128\n"),
            format!("{HEADER}\nkey=k\nmatmul=128\nconv=64\nextra\n"),
            "resflow tile configs v0\nkey=k\nmatmul=128\nconv=64\n".to_string(),
        ] {
            assert_eq!(parse(&bad, "k"), None, "{bad:?}");
        }
    }
}
