//! Where the data lives: the database URL, and the media dir's place beside the data dir.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// `JJONGAL_DATABASE_URL` as the store takes it: a `postgres://`/`postgresql://` URL (the
/// scheme in any case, RFC 3986), a `sqlite://` URL or a plain file path for SQLite.
/// Anything else that looks like a URL (`postgres:/…`, `mysql://…`) is an error, never a
/// SQLite file named like it (in a multi-process deployment each process would get its
/// own database).
pub(super) fn database_url(url: &str) -> anyhow::Result<String> {
    if url.trim() != url || url.starts_with(['"', '\'']) || url.ends_with(['"', '\'']) {
        bail!(
            "JJONGAL_DATABASE_URL has surrounding spaces or quotes (an env file that quotes it?)"
        );
    }
    // Anything that names a scheme with `://` is a URL: one of ours, or an error.
    if let Some((scheme, _)) = url.split_once("://")
        && !["postgres", "postgresql", "sqlite"].contains(&scheme.to_ascii_lowercase().as_str())
    {
        bail!(
            "JJONGAL_DATABASE_URL: unrecognised scheme `{scheme}://` (postgres://… for PostgreSQL, a file path or sqlite://… for SQLite)"
        );
    }
    let scheme_end = url.find(':').filter(|&i| {
        i > 1
            && url[..i].chars().enumerate().all(|(n, c)| {
                c.is_ascii_alphabetic() || (n > 0 && (c.is_ascii_digit() || "+-.".contains(c)))
            })
    });
    let Some(end) = scheme_end else {
        return Ok(url.to_string());
    };
    let scheme = url[..end].to_ascii_lowercase();
    let rest = &url[end..];
    match scheme.as_str() {
        "postgres" | "postgresql" | "sqlite" if rest.starts_with("://") => {
            Ok(format!("{scheme}{rest}"))
        }
        "postgres" | "postgresql" => bail!(
            "JJONGAL_DATABASE_URL: `{scheme}:` must be followed by `//` (postgres://user@host/db)"
        ),
        _ => bail!(
            "JJONGAL_DATABASE_URL: unrecognised scheme `{scheme}:` (postgres://… for PostgreSQL, a file path or sqlite://… for SQLite)"
        ),
    }
}

/// Whether `media` is `data` or one of its ancestors (`/`), once both are absolute.
pub(super) fn media_holds(media: &Path, data: &Path) -> bool {
    let (media, data) = (resolved(media), resolved(data));
    data.starts_with(&media)
}

/// `p` absolute, with `.` and `..` resolved, and symbolic links too as far as the path
/// exists (a media dir is often created later, so `data/media/..` must still be seen
/// as `data`).
fn resolved(p: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
        if let Ok(real) = std::fs::canonicalize(&out) {
            out = real;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_read_or_refused_never_guessed() {
        for (given, read) in [
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("Postgres://u@h/db", "postgres://u@h/db"),
            ("POSTGRESQL://u@h/db", "postgresql://u@h/db"),
            ("sqlite://data/x.db", "sqlite://data/x.db"),
            ("./data/jjongal.db", "./data/jjongal.db"),
            ("/var/lib/jjongal.db", "/var/lib/jjongal.db"),
            ("jjongal.db", "jjongal.db"),
        ] {
            assert_eq!(database_url(given).unwrap(), read, "{given}");
        }
        for bad in [
            "\"postgres://u@h/db\"",
            " postgres://u@h/db",
            "'postgres://u@h/db'",
            "1postgres://u@h/db",
            "postgres:/u@h/db",
            "postgres:u@h",
            "mysql://u@h/db",
            "http://x",
        ] {
            assert!(database_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn media_dirs_that_hold_the_data_dir_are_found() {
        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        assert!(media_holds(d, d));
        assert!(media_holds(Path::new("/"), d));
        assert!(media_holds(d.parent().unwrap(), d));
        assert!(!media_holds(&d.join("media"), d));
        // Not there yet, and `..` back into the data dir.
        assert!(media_holds(&d.join("media/.."), d));
        assert!(media_holds(&d.join("new/deeper/../.."), d));
    }
}
