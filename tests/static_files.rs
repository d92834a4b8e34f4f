//! Static files (issue 5): `/media/` and the site's own files through one engine, over HTTPS,
//! with exact statuses, headers and bytes; a traversal corpus sent over a raw TLS socket; a 1 GiB
//! sparse file served with flat memory.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use reqwest::header::HeaderMap;
use sha2::Digest;

/// Written outside the media folder; no response may ever contain it.
const SECRET: &str = "HERMES-EDGE-SECRET-MARKER-5f0c2a";
const HELLO: &[u8] = b"hello, media\n";
const VIDEO_LEN: usize = 300_000;
const BR_BYTES: &[u8] = b"\x1b\x07\x00pretend-brotli-bytes";
const GZ_BYTES: &[u8] = b"\x1f\x8b\x08pretend-gzip-bytes";
const JS: &[u8] = b"console.log('identity');\n";

/// Bytes 0, 1, ..., 250, 0, 1, ...: every range of it is recognisable.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A temporary folder with a config, media files, a secret outside `media/` and symlinks.
fn fixture(extra_config: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let m = d.join("media");
    std::fs::create_dir_all(m.join("sub")).unwrap();
    std::fs::create_dir_all(m.join(".git")).unwrap();
    std::fs::create_dir_all(d.join("pages")).unwrap();
    std::fs::write(
        d.join("edge.toml"),
        format!(
            "[limits]\nrequests_per_second_per_ip = 100000\nrequest_burst_per_ip = 100000\n{extra_config}"
        ),
    )
    .unwrap();
    std::fs::write(d.join("secret.txt"), SECRET).unwrap();
    std::fs::write(m.join("hello.txt"), HELLO).unwrap();
    std::fs::write(m.join("video.mp4"), pattern(VIDEO_LEN)).unwrap();
    std::fs::write(m.join("small.bin"), pattern(1000)).unwrap();
    std::fs::write(m.join("empty.txt"), b"").unwrap();
    std::fs::write(m.join("app.js"), JS).unwrap();
    std::fs::write(m.join("app.js.br"), BR_BYTES).unwrap();
    std::fs::write(m.join("app.js.gz"), GZ_BYTES).unwrap();
    std::fs::write(m.join("sub/inner.txt"), b"inner\n").unwrap();
    std::fs::write(m.join("sub/.hidden"), SECRET).unwrap();
    std::fs::write(m.join(".hidden.txt"), SECRET).unwrap();
    std::fs::write(m.join(".git/config"), SECRET).unwrap();
    std::fs::write(m.join("a <b> & \"c\".txt"), b"escaped\n").unwrap();
    std::fs::write(
        d.join("pages/video.html"),
        b"<!doctype html><title>video</title>\n",
    )
    .unwrap();
    use std::os::unix::fs::symlink;
    symlink("../secret.txt", m.join("link-out")).unwrap();
    symlink(d.join("secret.txt"), m.join("abs-link")).unwrap();
    symlink("..", m.join("dir-out")).unwrap();
    symlink("/etc", m.join("etc-link")).unwrap();
    symlink("hello.txt", m.join("link-in.txt")).unwrap();
    symlink(".hidden.txt", m.join("link-to-hidden.txt")).unwrap();
    let fifo = m.join("pipe");
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    let made = rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, mode, 0);
    assert_eq!(made, Ok(()));
    tmp
}

fn start(tmp: &tempfile::TempDir, extra: &[&str]) -> Server {
    let mut opts = Start::default()
        .in_dir(tmp.path())
        .arg("--config")
        .arg(tmp.path().join("edge.toml").display().to_string());
    for a in extra {
        opts = opts.arg(*a);
    }
    Server::start_with(opts)
}

fn public() -> (tempfile::TempDir, Server) {
    let tmp = fixture("[media]\npublic = true\n");
    let s = start(&tmp, &[]);
    (tmp, s)
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn fetch(c: &reqwest::Client, method: &str, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut rb = c.request(method.parse().unwrap(), url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap().to_vec();
    Got {
        status,
        headers,
        body,
    }
}

async fn get(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Got {
    fetch(c, "GET", url, headers).await
}

fn h1(s: &Server) -> reqwest::Client {
    s.client_builder().http1_only().build().unwrap()
}

/// Both protocols: HTTP/1.1 and HTTP/2 (the default client negotiates h2 by ALPN).
fn both(s: &Server) -> Vec<(&'static str, reqwest::Client)> {
    vec![("h1", h1(s)), ("h2", s.client())]
}

#[tokio::test]
async fn the_default_client_speaks_http2_so_tests_cover_both_protocols() {
    let (_tmp, s) = public();
    let r = s
        .client()
        .get(s.url("/media/hello.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let r = h1(&s).get(s.url("/media/hello.txt")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn media_needs_a_login_by_default_and_serves_signed_in_users_privately() {
    let tmp = fixture("");
    let s = start(&tmp, &[]);
    let anon = get(&s.client(), &s.url("/media/hello.txt"), &[]).await;
    assert_eq!(anon.status, 303);
    assert_eq!(
        anon.h("location"),
        Some("/login?next=%2Fmedia%2Fhello%2Etxt")
    );
    assert!(!anon.body.windows(HELLO.len()).any(|w| w == HELLO));

    let c = s.admin_client().await;
    let r = get(&c, &s.url("/media/hello.txt"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, HELLO);
    assert_eq!(r.h("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.h("content-length"), Some("13"));
    assert_eq!(r.h("accept-ranges"), Some("bytes"));
    assert_eq!(
        r.h("cache-control"),
        Some("private, max-age=0, must-revalidate")
    );
    assert_eq!(r.h("access-control-allow-origin"), None);
    assert_eq!(r.h("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.h("vary"), None);
    assert_eq!(r.h("content-encoding"), None);
    let etag = r.h("etag").unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 8,
        "{etag}"
    );
    let modified = std::fs::metadata(tmp.path().join("media/hello.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        r.h("last-modified"),
        Some(httpdate::fmt_http_date(modified).as_str())
    );
    let video = get(&c, &s.url("/media/video.mp4"), &[]).await;
    assert_eq!(video.status, 200);
    assert_eq!(video.h("content-type"), Some("video/mp4"));
    assert_eq!(video.body, pattern(VIDEO_LEN));
}

#[tokio::test]
async fn public_media_is_served_to_anyone_with_cors_star() {
    let (_tmp, s) = public();
    for (proto, c) in both(&s) {
        let r = get(&c, &s.url("/media/hello.txt"), &[]).await;
        assert_eq!(r.status, 200, "{proto}");
        assert_eq!(r.body, HELLO);
        assert_eq!(r.h("access-control-allow-origin"), Some("*"));
        assert_eq!(
            r.h("cache-control"),
            Some("public, max-age=0, must-revalidate")
        );
        let missing = get(&c, &s.url("/media/nothing.txt"), &[]).await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.h("access-control-allow-origin"), Some("*"));
        let body: serde_json::Value = serde_json::from_slice(&missing.body).unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn media_is_matched_before_the_chat_page() {
    let tmp = fixture("");
    let s = start(&tmp, &[]);
    let c = s.admin_client().await;
    // Extension-less paths are the chat page elsewhere; under /media/ they are files or 404.
    for path in [
        "/media/no-such-video",
        "/media",
        "/media/sub",
        "/media/sub/",
    ] {
        let r = get(&c, &s.url(path), &[]).await;
        assert_eq!(r.status, 404, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    std::fs::write(tmp.path().join("media/clip"), b"no extension").unwrap();
    let r = get(&c, &s.url("/media/clip"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"no extension");
    assert_eq!(r.h("content-type"), Some("application/octet-stream"));
}

#[tokio::test]
async fn head_has_the_headers_of_get_and_no_body() {
    let (_tmp, s) = public();
    for (proto, c) in both(&s) {
        for (path, len) in [("/media/hello.txt", 13), ("/media/video.mp4", VIDEO_LEN)] {
            let g = get(&c, &s.url(path), &[]).await;
            let h = fetch(&c, "HEAD", &s.url(path), &[]).await;
            assert_eq!(h.status, 200, "{proto} {path}");
            assert!(h.body.is_empty());
            let expected_len = len.to_string();
            assert_eq!(
                h.h("content-length"),
                Some(expected_len.as_str()),
                "{proto} {path}"
            );
            for name in [
                "etag",
                "last-modified",
                "content-type",
                "accept-ranges",
                "cache-control",
            ] {
                assert_eq!(h.h(name), g.h(name), "{proto} {path} {name}");
            }
        }
        // Range is defined for GET only: HEAD with a Range describes the whole file.
        let h = fetch(
            &c,
            "HEAD",
            &s.url("/media/video.mp4"),
            &[("range", "bytes=0-9")],
        )
        .await;
        assert_eq!(h.status, 200, "{proto}");
        assert_eq!(h.h("content-range"), None);
    }
}

#[tokio::test]
async fn a_single_range_answers_206_with_content_range() {
    let (_tmp, s) = public();
    let video = pattern(VIDEO_LEN);
    let small = pattern(1000);
    for (proto, c) in both(&s) {
        let cases: &[(&str, &str, &[u8], &str)] = &[
            (
                "/media/video.mp4",
                "bytes=0-9",
                &video[0..10],
                "bytes 0-9/300000",
            ),
            (
                "/media/video.mp4",
                "bytes=299990-",
                &video[299_990..],
                "bytes 299990-299999/300000",
            ),
            (
                "/media/video.mp4",
                "bytes=-5",
                &video[299_995..],
                "bytes 299995-299999/300000",
            ),
            // The end is clamped to the last byte.
            (
                "/media/video.mp4",
                "bytes=100000-999999",
                &video[100_000..],
                "bytes 100000-299999/300000",
            ),
            // A suffix longer than the file is the whole file.
            (
                "/media/small.bin",
                "bytes=-5000",
                &small[..],
                "bytes 0-999/1000",
            ),
            (
                "/media/small.bin",
                "bytes=500-500",
                &small[500..501],
                "bytes 500-500/1000",
            ),
            // Some unsatisfiable members are dropped when another one is satisfiable.
            (
                "/media/small.bin",
                "bytes=5000-6000, 1-2",
                &small[1..3],
                "bytes 1-2/1000",
            ),
        ];
        for (path, range, bytes, content_range) in cases {
            let r = get(&c, &s.url(path), &[("range", range)]).await;
            assert_eq!(r.status, 206, "{proto} {path} {range}");
            assert_eq!(
                r.h("content-range"),
                Some(*content_range),
                "{proto} {range}"
            );
            let len = bytes.len().to_string();
            assert_eq!(r.h("content-length"), Some(len.as_str()), "{proto} {range}");
            assert_eq!(r.h("accept-ranges"), Some("bytes"));
            assert!(r.h("etag").is_some());
            assert_eq!(&r.body[..], *bytes, "{proto} {path} {range}");
        }
    }
}

#[tokio::test]
async fn an_unsatisfiable_range_answers_416_and_a_malformed_one_is_ignored() {
    let (_tmp, s) = public();
    for (proto, c) in both(&s) {
        for (path, range, len) in [
            ("/media/video.mp4", "bytes=300000-", "300000"),
            ("/media/video.mp4", "bytes=400000-500000, 300001-", "300000"),
            ("/media/small.bin", "bytes=-0", "1000"),
            ("/media/empty.txt", "bytes=0-", "0"),
        ] {
            let r = get(&c, &s.url(path), &[("range", range)]).await;
            assert_eq!(r.status, 416, "{proto} {path} {range}");
            let expected = format!("bytes */{len}");
            assert_eq!(r.h("content-range"), Some(expected.as_str()));
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["error"]["code"], "range_not_satisfiable");
        }
        for range in ["bytes=9-1", "bytes=abc", "lines=0-1", "bytes=", "bytes=--1"] {
            let r = get(&c, &s.url("/media/small.bin"), &[("range", range)]).await;
            assert_eq!(r.status, 200, "{proto} {range}");
            assert_eq!(r.h("content-range"), None);
            assert_eq!(r.body, pattern(1000));
        }
        let empty = get(&c, &s.url("/media/empty.txt"), &[]).await;
        assert_eq!(empty.status, 200);
        assert_eq!(empty.h("content-length"), Some("0"));
        assert!(empty.body.is_empty());
    }
}

/// The exact multipart/byteranges body for `ranges` of `content`.
fn multipart(boundary: &str, ctype: &str, content: &[u8], ranges: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (a, b)) in ranges.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                content.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&content[*a..=*b]);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[tokio::test]
async fn several_ranges_answer_multipart_byteranges() {
    let (_tmp, s) = public();
    let video = pattern(VIDEO_LEN);
    let small = pattern(1000);
    for (proto, c) in both(&s) {
        for (path, content, ctype, header, ranges) in [
            (
                "/media/small.bin",
                &small,
                "application/octet-stream",
                "bytes=0-4, 10-14",
                vec![(0usize, 4usize), (10, 14)],
            ),
            (
                "/media/video.mp4",
                &video,
                "video/mp4",
                "bytes=200000-299999,0-99999, 100000-100001",
                vec![(200_000, 299_999), (0, 99_999), (100_000, 100_001)],
            ),
        ] {
            let r = get(&c, &s.url(path), &[("range", header)]).await;
            assert_eq!(r.status, 206, "{proto} {path}");
            let ct = r.h("content-type").unwrap();
            let boundary = ct
                .strip_prefix("multipart/byteranges; boundary=")
                .unwrap_or_else(|| panic!("{ct}"));
            let expected = multipart(boundary, ctype, content, &ranges);
            let len = expected.len().to_string();
            assert_eq!(r.h("content-length"), Some(len.as_str()), "{proto} {path}");
            assert_eq!(r.h("content-range"), None);
            assert!(r.body == expected, "{proto} {path}: multipart body differs");
        }
        // Overlapping ranges, or more than 16, are answered with the whole file.
        let r = get(
            &c,
            &s.url("/media/small.bin"),
            &[("range", "bytes=0-10,5-20")],
        )
        .await;
        assert_eq!(r.status, 200, "{proto}");
        assert_eq!(r.body, small);
        let many = (0..17)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect::<Vec<_>>();
        let header = format!("bytes={}", many.join(","));
        let r = get(&c, &s.url("/media/small.bin"), &[("range", &header)]).await;
        assert_eq!(r.status, 200, "{proto}");
        assert_eq!(r.body, small);
        // Sixteen are fine.
        let header = format!("bytes={}", many[..16].join(","));
        let r = get(&c, &s.url("/media/small.bin"), &[("range", &header)]).await;
        assert_eq!(r.status, 206, "{proto}");
    }
}

#[tokio::test]
async fn if_range_keeps_the_range_only_for_the_current_validator() {
    let (_tmp, s) = public();
    let small = pattern(1000);
    for (proto, c) in both(&s) {
        let first = get(&c, &s.url("/media/small.bin"), &[]).await;
        let etag = first.h("etag").unwrap().to_string();
        let modified = first.h("last-modified").unwrap().to_string();
        let weak = format!("W/{etag}");
        for (cond, status) in [
            (etag.as_str(), 206),
            (modified.as_str(), 206),
            ("\"stale\"", 200),
            (weak.as_str(), 200),
            ("Sun, 06 Nov 1994 08:49:37 GMT", 200),
            ("not a date", 200),
        ] {
            let r = get(
                &c,
                &s.url("/media/small.bin"),
                &[("range", "bytes=0-1"), ("if-range", cond)],
            )
            .await;
            assert_eq!(r.status, status, "{proto} If-Range: {cond}");
            if status == 206 {
                assert_eq!(r.body, &small[0..2]);
            } else {
                assert_eq!(r.body, small);
            }
        }
    }
}

#[tokio::test]
async fn if_none_match_answers_304_for_the_tag_a_list_a_weak_tag_or_star() {
    let (_tmp, s) = public();
    for (proto, c) in both(&s) {
        let first = get(&c, &s.url("/media/hello.txt"), &[]).await;
        let etag = first.h("etag").unwrap().to_string();
        let list = format!("\"other\", {etag}");
        let weak = format!("W/{etag}");
        for cond in [etag.as_str(), list.as_str(), weak.as_str(), "*"] {
            let r = get(&c, &s.url("/media/hello.txt"), &[("if-none-match", cond)]).await;
            assert_eq!(r.status, 304, "{proto} If-None-Match: {cond}");
            assert!(r.body.is_empty());
            assert_eq!(r.h("etag"), Some(etag.as_str()));
            assert_eq!(r.h("cache-control"), first.h("cache-control"));
            assert_eq!(r.h("last-modified"), first.h("last-modified"));
            assert_eq!(r.h("access-control-allow-origin"), Some("*"));
        }
        let r = get(
            &c,
            &s.url("/media/hello.txt"),
            &[("if-none-match", "\"other\"")],
        )
        .await;
        assert_eq!(r.status, 200, "{proto}");
        assert_eq!(r.body, HELLO);
        // If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.1.3).
        let r = get(
            &c,
            &s.url("/media/hello.txt"),
            &[
                ("if-none-match", "\"other\""),
                ("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{proto}");
        let r = fetch(
            &c,
            "HEAD",
            &s.url("/media/hello.txt"),
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(r.status, 304, "{proto}");
    }
}

#[tokio::test]
async fn if_modified_since_answers_304_unless_the_file_is_newer() {
    let (_tmp, s) = public();
    for (proto, c) in both(&s) {
        let first = get(&c, &s.url("/media/hello.txt"), &[]).await;
        let modified = first.h("last-modified").unwrap().to_string();
        for (date, status) in [
            (modified.as_str(), 304),
            ("Fri, 01 Jan 2100 00:00:00 GMT", 304),
            ("Sun, 06 Nov 1994 08:49:37 GMT", 200),
            ("yesterday", 200),
        ] {
            let r = get(
                &c,
                &s.url("/media/hello.txt"),
                &[("if-modified-since", date)],
            )
            .await;
            assert_eq!(r.status, status, "{proto} If-Modified-Since: {date}");
        }
    }
}

#[tokio::test]
async fn the_etag_changes_when_the_file_changes_and_if_match_is_strong() {
    let (tmp, s) = public();
    let c = s.client();
    let path = tmp.path().join("media/hello.txt");
    let before = get(&c, &s.url("/media/hello.txt"), &[]).await;
    let old = before.h("etag").unwrap().to_string();
    let again = get(&c, &s.url("/media/hello.txt"), &[]).await;
    assert_eq!(
        again.h("etag"),
        Some(old.as_str()),
        "stable while unchanged"
    );
    std::fs::write(&path, b"hello, changed\n").unwrap();
    let after = get(&c, &s.url("/media/hello.txt"), &[("if-none-match", &old)]).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.body, b"hello, changed\n");
    let new = after.h("etag").unwrap().to_string();
    assert_ne!(new, old);
    // If-Match: the current strong tag passes, an old or weak one fails with 412.
    let ok = get(&c, &s.url("/media/hello.txt"), &[("if-match", &new)]).await;
    assert_eq!(ok.status, 200);
    let weak = format!("W/{new}");
    for cond in [old.as_str(), weak.as_str()] {
        let r = get(&c, &s.url("/media/hello.txt"), &[("if-match", cond)]).await;
        assert_eq!(r.status, 412, "If-Match: {cond}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["code"], "precondition_failed");
    }
}

#[tokio::test]
async fn precompressed_siblings_follow_accept_encoding_with_their_own_etag() {
    let (_tmp, s) = public();
    for (proto, c) in both(&s) {
        let plain = get(&c, &s.url("/media/app.js"), &[]).await;
        assert_eq!(plain.status, 200);
        assert_eq!(plain.body, JS);
        assert_eq!(plain.h("content-encoding"), None);
        assert_eq!(plain.h("vary"), Some("Accept-Encoding"));
        // Script under /media/ is sent as text, so no page runs it (see the #21 tests below).
        let js_type = plain.h("content-type").unwrap().to_string();
        assert_eq!(js_type, "text/plain; charset=utf-8");
        let cases: &[(&str, Option<&str>, &[u8])] = &[
            ("gzip, deflate, br", Some("br"), BR_BYTES),
            ("br", Some("br"), BR_BYTES),
            ("gzip", Some("gzip"), GZ_BYTES),
            ("br;q=0, gzip", Some("gzip"), GZ_BYTES),
            ("br;q=0.5, gzip;q=0.8", Some("gzip"), GZ_BYTES),
            ("*", Some("br"), BR_BYTES),
            ("br;q=0, gzip;q=0", None, JS),
            ("identity", None, JS),
            ("deflate", None, JS),
        ];
        let mut tags = std::collections::HashMap::new();
        for (ae, coding, bytes) in cases {
            let r = get(&c, &s.url("/media/app.js"), &[("accept-encoding", ae)]).await;
            assert_eq!(r.status, 200, "{proto} {ae}");
            assert_eq!(r.h("content-encoding"), *coding, "{proto} {ae}");
            assert_eq!(r.h("vary"), Some("Accept-Encoding"), "{proto} {ae}");
            assert_eq!(r.h("content-type"), Some(js_type.as_str()), "{proto} {ae}");
            assert_eq!(&r.body[..], *bytes, "{proto} {ae}");
            let len = bytes.len().to_string();
            assert_eq!(r.h("content-length"), Some(len.as_str()));
            tags.insert(
                coding.unwrap_or("identity"),
                r.h("etag").unwrap().to_string(),
            );
        }
        assert_eq!(tags.len(), 3);
        let distinct: std::collections::HashSet<_> = tags.values().collect();
        assert_eq!(
            distinct.len(),
            3,
            "each representation has its own ETag: {tags:?}"
        );
        // Ranges apply to the encoded bytes, validated by the encoded ETag.
        let br_tag = &tags["br"];
        let r = get(
            &c,
            &s.url("/media/app.js"),
            &[
                ("accept-encoding", "br"),
                ("range", "bytes=0-2"),
                ("if-range", br_tag),
            ],
        )
        .await;
        assert_eq!(r.status, 206, "{proto}");
        assert_eq!(r.h("content-encoding"), Some("br"));
        let cr = format!("bytes 0-2/{}", BR_BYTES.len());
        assert_eq!(r.h("content-range"), Some(cr.as_str()));
        assert_eq!(r.body, &BR_BYTES[..3]);
        let r = get(
            &c,
            &s.url("/media/app.js"),
            &[("accept-encoding", "br"), ("if-none-match", br_tag)],
        )
        .await;
        assert_eq!(r.status, 304, "{proto}");
        assert_eq!(r.h("vary"), Some("Accept-Encoding"));
        // The identity tag does not validate the brotli representation.
        let r = get(
            &c,
            &s.url("/media/app.js"),
            &[
                ("accept-encoding", "br"),
                ("if-none-match", &tags["identity"]),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{proto}");
        // A file without siblings varies on nothing.
        let r = get(
            &c,
            &s.url("/media/hello.txt"),
            &[("accept-encoding", "br, gzip")],
        )
        .await;
        assert_eq!(r.h("vary"), None);
        assert_eq!(r.h("content-encoding"), None);
    }
}

#[tokio::test]
async fn dotfiles_are_not_found_and_inside_symlinks_are_served() {
    let (_tmp, s) = public();
    let c = s.client();
    for path in [
        "/media/.hidden.txt",
        "/media/.git/config",
        "/media/sub/.hidden",
        "/media/link-to-hidden.txt",
        "/media/link-out",
        "/media/abs-link",
        "/media/dir-out/secret.txt",
        "/media/etc-link/passwd",
        // A FIFO would block a reader forever; it is not a file to serve.
        "/media/pipe",
    ] {
        let r = get(&c, &s.url(path), &[]).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET), "{path}");
    }
    let r = get(&c, &s.url("/media/link-in.txt"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, HELLO);
    let r = get(&c, &s.url("/media/sub/inner.txt"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"inner\n");
}

#[tokio::test]
async fn a_media_folder_that_is_itself_a_symlink_is_served_and_still_confines() {
    // media -> real-media: every lookup then takes the resolving path instead of the direct one.
    let tmp = fixture("[media]\npublic = true\n");
    std::fs::rename(tmp.path().join("media"), tmp.path().join("real-media")).unwrap();
    std::os::unix::fs::symlink("real-media", tmp.path().join("media")).unwrap();
    std::fs::write(tmp.path().join("real-media/inside.txt"), b"inside now\n").unwrap();
    let s = start(&tmp, &[]);
    let c = s.client();
    for (path, status, body) in [
        ("/media/hello.txt", 200, HELLO),
        ("/media/link-in.txt", 200, HELLO),
        ("/media/sub/inner.txt", 200, &b"inner\n"[..]),
        ("/media/inside.txt", 200, b"inside now\n"),
        ("/media/link-out", 404, b""),
        ("/media/.hidden.txt", 404, b""),
        ("/media/link-to-hidden.txt", 404, b""),
        ("/media/dir-out/secret.txt", 404, b""),
    ] {
        let r = get(&c, &s.url(path), &[]).await;
        assert_eq!(r.status, status, "{path}");
        if status == 200 {
            assert_eq!(r.body, body, "{path}");
        }
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET), "{path}");
    }
    let r = get(&c, &s.url("/media/app.js"), &[("accept-encoding", "br")]).await;
    assert_eq!(r.h("content-encoding"), Some("br"));
    assert_eq!(r.body, BR_BYTES);
    run_corpus(&s, None).await;
}

#[tokio::test]
async fn directory_listing_is_off_by_default() {
    let (_tmp, s) = public();
    for path in [
        "/media",
        "/media/",
        "/media/sub",
        "/media/sub/",
        "/media/hello.txt/",
    ] {
        let r = get(&s.client(), &s.url(path), &[]).await;
        assert_eq!(r.status, 404, "{path}");
    }
}

#[tokio::test]
async fn directory_listing_when_on_is_escaped_hides_dotfiles_and_adds_the_slash() {
    let tmp = fixture("[media]\npublic = true\nlisting = true\n");
    let s = start(&tmp, &[]);
    let c = s.client();
    for (path, location) in [("/media", "/media/"), ("/media/sub", "/media/sub/")] {
        let r = get(&c, &s.url(path), &[]).await;
        assert_eq!(r.status, 308, "{path}");
        assert_eq!(r.h("location"), Some(location));
    }
    let r = get(&c, &s.url("/media/"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.h("content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8(r.body).unwrap();
    assert!(
        html.contains("<li><a href=\"a%20%3Cb%3E%20%26%20%22c%22%2Etxt\">a &lt;b&gt; &amp; &quot;c&quot;.txt</a></li>"),
        "{html}"
    );
    assert!(
        html.contains("<li><a href=\"sub/\">sub/</a></li>"),
        "{html}"
    );
    assert!(
        html.contains("<li><a href=\"hello%2Etxt\">hello.txt</a></li>"),
        "{html}"
    );
    assert!(html.contains(">link-in.txt</a>"), "{html}");
    for absent in [
        ".hidden",
        ".git",
        "link-out",
        "abs-link",
        "dir-out",
        "etc-link",
        "link-to-hidden",
        "<b>",
    ] {
        assert!(!html.contains(absent), "{absent} listed: {html}");
    }
    assert!(!html.contains("../"), "no parent link at the root");
    let r = get(&c, &s.url("/media/sub/"), &[]).await;
    assert_eq!(r.status, 200);
    let html = String::from_utf8(r.body).unwrap();
    assert!(
        html.contains("<title>Index of /media/sub/</title>"),
        "{html}"
    );
    assert!(html.contains("<li><a href=\"../\">../</a></li>"), "{html}");
    assert!(
        html.contains("<li><a href=\"inner%2Etxt\">inner.txt</a></li>"),
        "{html}"
    );
    assert!(!html.contains("hidden"), "{html}");
}

/// Paths that try to leave the media folder (or the site folder). Sent byte for byte.
fn traversal_corpus() -> Vec<Vec<u8>> {
    let paths: &[&str] = &[
        "/media/../secret.txt",
        "/media/../../etc/passwd",
        "/media/../../../../../../../../etc/passwd",
        "/media/..%2fsecret.txt",
        "/media/..%2Fsecret.txt",
        "/media/%2e%2e/secret.txt",
        "/media/%2E%2E/secret.txt",
        "/media/%2e%2e%2fsecret.txt",
        "/media/.%2e/secret.txt",
        "/media/%2e./secret.txt",
        "/media/..%5csecret.txt",
        "/media/..%5Csecret.txt",
        "/media/..\\secret.txt",
        "/media/%5c..%5csecret.txt",
        "/media/sub/../../secret.txt",
        "/media/sub/..%2f..%2fsecret.txt",
        "/media/sub/%2e%2e/%2e%2e/secret.txt",
        "/media/./../secret.txt",
        "/media/.",
        "/media/..",
        "/media//etc/passwd",
        "/media/%2fetc%2fpasswd",
        "/media/%2Fetc/passwd",
        "/media/link-out",
        "/media/link-out/",
        "/media/abs-link",
        "/media/dir-out/secret.txt",
        "/media/dir-out/%2e%2e/secret.txt",
        "/media/dir-out/../secret.txt",
        "/media/etc-link/passwd",
        "/media/etc-link/../secret.txt",
        "/media/hello.txt%00.png",
        "/media/link-out%00",
        "/media/%00",
        "/media/secret.txt",
        "/media/.hidden.txt",
        "/media/%2ehidden.txt",
        "/media/.git/config",
        "/media/sub/.hidden",
        "/media/link-to-hidden.txt",
        "/media/..;/secret.txt",
        "/media/%252e%252e/secret.txt",
        "/media/%25%32%65%25%32%65/secret.txt",
        "/media/..%252fsecret.txt",
        "/media/..%c0%afsecret.txt",
        "/media/%c0%ae%c0%ae/secret.txt",
        "/media/%e0%80%ae%e0%80%ae/secret.txt",
        "/media/%ef%bc%8e%ef%bc%8e/secret.txt",
        "/media/..%u2215secret.txt",
        "/media/.../secret.txt",
        "/media/....//secret.txt",
        "/media/hello.txt/../../secret.txt",
        "/media/%2e%2e%5c%2e%2e%5csecret.txt",
        "/media/C:\\secret.txt",
        "/media/a%09b",
        "/media/%0d%0aX-Leak:%20secret",
        "/media/link-out.br",
    ];
    let mut out: Vec<Vec<u8>> = paths.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Raw bytes an HTTP client library would never send.
    out.push(b"/media/hello.txt\x00/../../secret.txt".to_vec());
    out.push(b"/media/\xc0\xae\xc0\xae/secret.txt".to_vec());
    out.push(b"https://localhost/media/../secret.txt".to_vec());
    out.push(b"https://localhost/media/%2e%2e/secret.txt".to_vec());
    out
}

fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

async fn run_corpus(s: &Server, cookie: Option<&str>) -> usize {
    let corpus = traversal_corpus();
    assert!(corpus.len() >= 50, "{}", corpus.len());
    let secret = SECRET.as_bytes();
    for target in &corpus {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(c) = cookie {
            req.extend_from_slice(format!("Cookie: {c}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let resp = raw_exchange(s, &req, 10).await;
        let status = status_of(&resp);
        let shown = String::from_utf8_lossy(target);
        assert!(
            status == 400 || status == 404,
            "{shown}: {status}\n{}",
            String::from_utf8_lossy(&resp)
        );
        assert!(
            !resp.windows(secret.len()).any(|w| w == secret),
            "{shown} leaked the secret"
        );
        assert!(
            !String::from_utf8_lossy(&resp).contains("root:x:0:0"),
            "{shown} leaked /etc/passwd"
        );
    }
    corpus.len()
}

#[tokio::test]
async fn the_traversal_corpus_answers_400_or_404_and_never_leaks_a_byte() {
    // Public media, no session.
    let (_tmp, s) = public();
    let n = run_corpus(&s, None).await;
    assert!(n >= 50);
    // Media behind the login, with a session cookie.
    let tmp = fixture("");
    let s = start(&tmp, &[]);
    let c = s.client();
    let login = s.login(&c, "admin", ADMIN_PASSWORD).await;
    assert_eq!(login.status(), 200);
    let cookie = cookie_of(&login);
    run_corpus(&s, Some(&cookie)).await;
    // The same files are still served to that session, so the refusals above are not blanket.
    let mut req =
        b"GET /media/hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
    req.extend_from_slice(format!("Cookie: {cookie}\r\n\r\n").as_bytes());
    let resp = raw_exchange(&s, &req, 10).await;
    assert_eq!(status_of(&resp), 200);
    assert!(resp.ends_with(HELLO));
}

#[tokio::test]
async fn a_1_gib_sparse_file_streams_completely_with_flat_memory() {
    use futures_util::StreamExt;
    let (tmp, s) = public();
    const GIB: u64 = 1 << 30;
    let f = std::fs::File::create(tmp.path().join("media/big.bin")).unwrap();
    f.set_len(GIB).unwrap();
    drop(f);
    let c = h1(&s);
    // Warm up the streaming path (blocking threads, buffers) before the baseline.
    for _ in 0..3 {
        let r = get(&c, &s.url("/media/video.mp4"), &[]).await;
        assert_eq!(r.body.len(), VIDEO_LEN);
    }
    let pid = s.pid();
    let baseline = rss_kib(pid);
    let c = s
        .client_builder()
        .http1_only()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let r = c.get(s.url("/media/big.bin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], GIB.to_string().as_str());
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let mut stream = r.bytes_stream();
    let mut total: u64 = 0;
    let mut nonzero = false;
    let mut peak = baseline;
    let mut next_sample = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        nonzero |= chunk.iter().any(|b| *b != 0);
        total += chunk.len() as u64;
        if total >= next_sample {
            peak = peak.max(rss_kib(pid));
            next_sample += 16 << 20;
        }
    }
    peak = peak.max(rss_kib(pid));
    assert_eq!(total, GIB);
    assert!(!nonzero, "a sparse file reads as zeros");
    let growth = peak.saturating_sub(baseline);
    eprintln!("RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB");
    assert!(growth < 10 * 1024, "resident memory grew by {growth} KiB");
}

#[tokio::test]
async fn a_client_leaving_mid_file_is_not_an_error() {
    use futures_util::StreamExt;
    let (tmp, s) = public();
    let f = std::fs::File::create(tmp.path().join("media/big.bin")).unwrap();
    f.set_len(256 << 20).unwrap();
    drop(f);
    for (proto, c) in both(&s) {
        let r = c.get(s.url("/media/big.bin")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{proto}");
        let mut stream = r.bytes_stream();
        let mut got = 0usize;
        while got < 1 << 20 {
            got += stream.next().await.unwrap().unwrap().len();
        }
        drop(stream);
        drop(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = get(&s.client(), &s.url("/media/hello.txt"), &[]).await;
    assert_eq!(r.status, 200);
    let logs = format!("{}\n{}", s.stdout(), s.stderr());
    for line in logs.lines() {
        assert!(
            !line.contains("ERROR") && !line.contains("WARN") && !line.contains("panicked"),
            "{line}"
        );
    }
    assert!(
        logs.contains("/media/big.bin"),
        "the requests were logged: {logs}"
    );
}

#[tokio::test]
async fn methods_other_than_get_and_head_are_refused_with_allow() {
    let tmp = fixture("");
    let s = start(&tmp, &[]);
    let c = s.admin_client().await;
    for method in ["POST", "PUT", "DELETE"] {
        let r = c
            .request(method.parse().unwrap(), s.url("/media/hello.txt"))
            .header("origin", s.origin())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "GET, HEAD");
    }
    assert_eq!(
        std::fs::read(tmp.path().join("media/hello.txt")).unwrap(),
        HELLO
    );
}

fn sha_tag(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&sha2::Sha256::digest(bytes)[..16]))
}

#[tokio::test]
async fn embedded_site_files_carry_a_content_hash_etag_and_revalidate() {
    let (_tmp, s) = public();
    let disk: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/README.md");
    let expected = std::fs::read(&disk).unwrap();
    for (proto, c) in both(&s) {
        // Public: no session needed for site assets.
        let r = get(&c, &s.url("/README.md"), &[]).await;
        assert_eq!(r.status, 200, "{proto}");
        assert_eq!(r.body, expected);
        let tag = sha_tag(&expected);
        assert_eq!(r.h("etag"), Some(tag.as_str()));
        assert_eq!(r.h("cache-control"), Some("no-cache"));
        assert_eq!(r.h("content-type"), Some("text/markdown; charset=utf-8"));
        assert_eq!(r.h("last-modified"), None, "embedded files have no mtime");
        assert_eq!(r.h("accept-ranges"), Some("bytes"));
        assert_eq!(r.h("access-control-allow-origin"), None);
        let r = get(&c, &s.url("/README.md"), &[("if-none-match", &tag)]).await;
        assert_eq!(r.status, 304, "{proto}");
        assert!(r.body.is_empty());
        let r = get(&c, &s.url("/README.md"), &[("range", "bytes=0-6")]).await;
        assert_eq!(r.status, 206, "{proto}");
        assert_eq!(r.body, &expected[..7]);
        let r = fetch(&c, "HEAD", &s.url("/README.md"), &[]).await;
        assert_eq!(r.status, 200);
        let len = expected.len().to_string();
        assert_eq!(r.h("content-length"), Some(len.as_str()));
        assert!(r.body.is_empty());
        for (path, status) in [
            ("/nothing.js", 303),
            ("/.hidden", 303),
            ("/..%2fCargo.toml", 303),
            ("/a%2fb.js", 303),
            ("/vendor%5c..%5cCargo.toml", 303),
        ] {
            let r = get(&c, &s.url(path), &[]).await;
            assert_eq!(r.status, status, "{proto} {path}");
        }
    }
}

#[tokio::test]
async fn a_www_folder_overrides_the_embedded_files_with_disk_semantics_and_cache_lifetimes() {
    let tmp = fixture("");
    let www = tmp.path().join("site");
    std::fs::create_dir_all(www.join("vendor")).unwrap();
    std::fs::write(
        www.join("login.html"),
        b"<!doctype html><title>custom login</title>\n",
    )
    .unwrap();
    std::fs::write(
        www.join("index.html"),
        b"<!doctype html><title>custom chat</title>\n",
    )
    .unwrap();
    std::fs::write(www.join("app.3f2a9c1b.js"), b"// hashed\n").unwrap();
    std::fs::write(www.join("vendor/lib-0123abcd.css"), b"/* hashed */\n").unwrap();
    std::fs::write(www.join("style.css"), b"body{}\n").unwrap();
    std::fs::write(www.join("style.css.gz"), GZ_BYTES).unwrap();
    let s = start(&tmp, &["--www", www.to_str().unwrap()]);
    let c = s.client();
    let login = get(&c, &s.url("/login"), &[]).await;
    assert_eq!(login.status, 200);
    assert_eq!(login.body, b"<!doctype html><title>custom login</title>\n");
    assert_eq!(login.h("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(login.h("cache-control"), Some("no-cache"));
    assert!(
        login.h("last-modified").is_some(),
        "disk files have a Last-Modified"
    );
    let etag = login.h("etag").unwrap().to_string();
    let again = get(&c, &s.url("/login"), &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    for (path, cache, body) in [
        (
            "/app.3f2a9c1b.js",
            "public, max-age=31536000, immutable",
            &b"// hashed\n"[..],
        ),
        (
            "/vendor/lib-0123abcd.css",
            "public, max-age=31536000, immutable",
            b"/* hashed */\n",
        ),
        ("/style.css", "no-cache", b"body{}\n"),
    ] {
        let r = get(&c, &s.url(path), &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.h("cache-control"), Some(cache), "{path}");
        assert_eq!(r.body, body, "{path}");
    }
    let gz = get(&c, &s.url("/style.css"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.h("content-encoding"), Some("gzip"));
    assert_eq!(gz.h("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(gz.body, GZ_BYTES);
    // The folder replaces the embedded copy entirely: not an asset, so the login gate answers.
    let r = get(&c, &s.url("/README.md"), &[]).await;
    assert_eq!(r.status, 303);
    // Pages still need a login; signed in, the chat page comes from the folder too.
    let r = get(&c, &s.url("/index.html"), &[]).await;
    assert_eq!(r.status, 303);
    let admin = s.admin_client().await;
    let r = get(&admin, &s.url("/README.md"), &[]).await;
    assert_eq!(r.status, 404);
    let r = get(&admin, &s.url("/"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<!doctype html><title>custom chat</title>\n");
    assert_eq!(r.h("cache-control"), Some("no-cache"));
    // Traversal from the site root: not an asset, so the login gate answers (303), and signed in
    // it is no page either (404); never a byte of the file outside.
    let login = s.login(&s.client(), "admin", ADMIN_PASSWORD).await;
    let cookie = cookie_of(&login);
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/%2e%2e/secret.txt",
        "/vendor/../../secret.txt",
        "/..\\secret.txt",
        "/%5c..%5csecret.txt",
        "/vendor%2f..%2f..%2fsecret.txt",
    ] {
        for (session, status) in [(None, 303), (Some(cookie.as_str()), 404)] {
            let mut req =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
            if let Some(c) = session {
                req.push_str(&format!("Cookie: {c}\r\n"));
            }
            req.push_str("\r\n");
            let resp = raw_exchange(&s, req.as_bytes(), 10).await;
            assert_eq!(
                status_of(&resp),
                status,
                "{path} signed in: {}",
                session.is_some()
            );
            assert!(!String::from_utf8_lossy(&resp).contains(SECRET), "{path}");
        }
    }
}

#[tokio::test]
async fn custom_routes_serve_their_file_after_the_login_with_full_semantics() {
    let tmp = fixture(
        "[[routes]]\npath = \"/video\"\nfile = \"pages/video.html\"\n\n[[routes]]\npath = \"/gone\"\nfile = \"pages/missing.html\"\n",
    );
    let s = start(&tmp, &[]);
    let anon = get(&s.client(), &s.url("/video"), &[]).await;
    assert_eq!(anon.status, 303);
    assert_eq!(anon.h("location"), Some("/login?next=%2Fvideo"));
    let c = s.admin_client().await;
    let r = get(&c, &s.url("/video"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"<!doctype html><title>video</title>\n");
    assert_eq!(r.h("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.h("cache-control"), Some("no-cache"));
    assert_eq!(r.h("accept-ranges"), Some("bytes"));
    let etag = r.h("etag").unwrap().to_string();
    let r = get(&c, &s.url("/video"), &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    let r = get(&c, &s.url("/video"), &[("range", "bytes=2-10")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"doctype h");
    let r = get(&c, &s.url("/gone"), &[]).await;
    assert_eq!(r.status, 500);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"]["code"], "route_file_unreadable");
    // Other extension-less paths are still the chat page (or its 404 when the site has none).
    let r = get(&c, &s.url("/videos"), &[]).await;
    assert_ne!(r.body, b"<!doctype html><title>video</title>\n");
}

/// Small `--www` files are answered from memory (`static_files::SmallFiles`): the answer must be the one
/// a fresh read gives, and every change on disk must show on the very next request.
#[tokio::test]
async fn www_files_answered_from_memory_follow_every_change_on_disk() {
    let tmp = fixture("");
    let www = tmp.path().join("deploy/site");
    std::fs::create_dir_all(&www).unwrap();
    let file = www.join("page.txt");
    std::fs::write(&file, b"first version\n").unwrap();
    let s = start(&tmp, &["--www", www.to_str().unwrap()]);
    let c = h1(&s);
    let url = s.url("/page.txt");
    let names = [
        "etag",
        "last-modified",
        "content-type",
        "content-length",
        "cache-control",
        "accept-ranges",
        "vary",
    ];
    let headers = |g: &Got| names.map(|n| g.h(n).map(str::to_string));

    // Read once, then kept, and answered exactly the same.
    let fresh = get(&c, &url, &[]).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.body, b"first version\n");
    for _ in 0..3 {
        let kept = get(&c, &url, &[]).await;
        assert_eq!(kept.status, 200);
        assert_eq!(kept.body, b"first version\n");
        assert_eq!(headers(&kept), headers(&fresh));
    }
    // From memory over both protocols, and HEAD: the same headers, the length included (the
    // kept map leaves it to hyper, and HEAD puts it back), and HEAD has no body.
    for (proto, c) in both(&s) {
        let kept = get(&c, &url, &[]).await;
        assert_eq!(headers(&kept), headers(&fresh), "{proto}");
        let head = fetch(&c, "HEAD", &url, &[]).await;
        assert_eq!(head.status, 200, "{proto}");
        assert!(head.body.is_empty(), "{proto}");
        assert_eq!(headers(&head), headers(&fresh), "{proto} HEAD");
    }
    let etag = fresh.h("etag").unwrap().to_string();
    let not_modified = get(&c, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, 304);
    let range = get(&c, &url, &[("range", "bytes=6-12")]).await;
    assert_eq!(range.status, 206);
    assert_eq!(range.body, b"version");
    assert_eq!(range.h("content-range"), Some("bytes 6-12/14"));

    // Rewritten in place with the same length: the next request sees it.
    std::fs::write(&file, b"other version\n").unwrap();
    let changed = get(&c, &url, &[]).await;
    assert_eq!(changed.body, b"other version\n");
    assert_ne!(changed.h("etag").unwrap(), etag);
    let stale = get(&c, &url, &[("if-none-match", &etag)]).await;
    assert_eq!(stale.status, 200);

    // Kept again, then a precompressed sibling appears: it is offered at once, with Vary.
    assert_eq!(get(&c, &url, &[]).await.body, b"other version\n");
    std::fs::write(www.join("page.txt.gz"), GZ_BYTES).unwrap();
    let gz = get(&c, &url, &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.body, GZ_BYTES);
    assert_eq!(gz.h("content-encoding"), Some("gzip"));
    assert_eq!(gz.h("vary"), Some("Accept-Encoding"));
    let plain = get(&c, &url, &[]).await;
    assert_eq!(plain.body, b"other version\n");
    assert_eq!(plain.h("vary"), Some("Accept-Encoding"));

    // Kept, then replaced by a rename (how sites are deployed), then removed.
    std::fs::remove_file(www.join("page.txt.gz")).unwrap();
    assert_eq!(get(&c, &url, &[]).await.h("vary"), None);
    std::fs::write(www.join("next.tmp"), b"third version\n").unwrap();
    std::fs::rename(www.join("next.tmp"), &file).unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"third version\n");
    assert_eq!(get(&c, &url, &[]).await.body, b"third version\n");

    // Written through a hard link outside the site: the next request sees it.
    let link = tmp.path().join("hard-link.txt");
    std::fs::hard_link(&file, &link).unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"third version\n");
    std::fs::write(&link, b"fourth version\n").unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"fourth version\n");
    std::fs::remove_file(&file).unwrap();
    assert_ne!(get(&c, &url, &[]).await.status, 200);

    // A folder on the way swapped for a link that leads out of the site: never served from memory.
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::write(www.join("sub/inner.txt"), b"inside\n").unwrap();
    let inner = s.url("/sub/inner.txt");
    assert_eq!(get(&c, &inner, &[]).await.body, b"inside\n");
    assert_eq!(get(&c, &inner, &[]).await.body, b"inside\n");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("inner.txt"), SECRET).unwrap();
    std::fs::rename(www.join("sub"), tmp.path().join("old-sub")).unwrap();
    std::os::unix::fs::symlink(&outside, www.join("sub")).unwrap();
    let after = get(&c, &inner, &[]).await;
    assert!(
        !String::from_utf8_lossy(&after.body).contains(SECRET),
        "{}",
        after.status
    );

    // The whole site folder replaced by a rename (a deploy): the next request sees the new site.
    std::fs::write(&file, b"old site\n").unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"old site\n");
    let next = tmp.path().join("next-site");
    std::fs::create_dir_all(&next).unwrap();
    std::fs::write(next.join("page.txt"), b"new site\n").unwrap();
    std::fs::rename(&www, tmp.path().join("previous-site")).unwrap();
    std::fs::rename(&next, &www).unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"new site\n");

    // A folder above the site replaced the same way.
    let deploy = tmp.path().join("deploy");
    let next = tmp.path().join("next-deploy");
    std::fs::create_dir_all(next.join("site")).unwrap();
    std::fs::write(next.join("site/page.txt"), b"newer site\n").unwrap();
    std::fs::rename(&deploy, tmp.path().join("previous-deploy")).unwrap();
    std::fs::rename(&next, &deploy).unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"newer site\n");
    assert_eq!(get(&c, &url, &[]).await.body, b"newer site\n");

    // And again: the folder that came in by the last swap is watched in its turn.
    let next = tmp.path().join("next-deploy");
    std::fs::create_dir_all(next.join("site")).unwrap();
    std::fs::write(next.join("site/page.txt"), b"newest site\n").unwrap();
    std::fs::rename(&deploy, tmp.path().join("older-deploy")).unwrap();
    std::fs::rename(&next, &deploy).unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"newest site\n");
}

/// Every rewrite of a kept file shows on the very next request, many times over, on both
/// protocols, with other kept files asked in between. The edge learns of a change from its
/// reactor's record of the inotify descriptor rather than asking the kernel on each request
/// (src/disk_watch.rs, `pending_here`), so this runs the rewrite-then-ask order fast and often.
#[tokio::test]
async fn rapid_rewrites_of_kept_files_each_show_on_the_next_request() {
    let tmp = fixture("");
    let www = tmp.path().join("site");
    std::fs::create_dir_all(&www).unwrap();
    let (file, other) = (www.join("count.txt"), www.join("other.txt"));
    std::fs::write(&file, b"start").unwrap();
    std::fs::write(&other, b"other").unwrap();
    let s = start(&tmp, &["--www", www.to_str().unwrap()]);
    for (proto, c) in both(&s) {
        // Kept from here on.
        for _ in 0..2 {
            assert_eq!(get(&c, &s.url("/count.txt"), &[]).await.body, b"start");
        }
        for i in 0..60 {
            let text = format!("{proto} {i}");
            std::fs::write(&file, &text).unwrap();
            let got = get(&c, &s.url("/count.txt"), &[]).await;
            assert_eq!(
                String::from_utf8_lossy(&got.body),
                text,
                "{proto}: rewrite {i} not seen"
            );
            // Asked again unchanged: answered the same (from memory once more).
            let again = get(&c, &s.url("/count.txt"), &[]).await;
            assert_eq!(String::from_utf8_lossy(&again.body), text, "{proto} {i}");
            if i % 3 == 0 {
                assert_eq!(get(&c, &s.url("/other.txt"), &[]).await.body, b"other");
            }
        }
        std::fs::write(&file, b"start").unwrap();
    }
}

/// Folders swapped in above the site root are watched in their turn: after `a` is replaced, a
/// later swap of `a/b` (a folder inside the new `a`) still shows on the next request.
#[tokio::test]
async fn www_files_follow_folders_swapped_twice_above_the_root() {
    let tmp = fixture("");
    let make = |dir: &std::path::Path, text: &str| {
        std::fs::create_dir_all(dir.join("b/site")).unwrap();
        std::fs::write(dir.join("b/site/page.txt"), text).unwrap();
    };
    let a = tmp.path().join("a");
    make(&a, "first\n");
    let www = a.join("b/site");
    let s = start(&tmp, &["--www", www.to_str().unwrap()]);
    let c = h1(&s);
    let url = s.url("/page.txt");
    assert_eq!(get(&c, &url, &[]).await.body, b"first\n");
    assert_eq!(get(&c, &url, &[]).await.body, b"first\n");

    let next = tmp.path().join("next-a");
    make(&next, "second\n");
    std::fs::rename(&a, tmp.path().join("old-a")).unwrap();
    std::fs::rename(&next, &a).unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"second\n");
    assert_eq!(get(&c, &url, &[]).await.body, b"second\n");

    // Now swap `b` inside the `a` that came in above.
    let next_b = tmp.path().join("next-b");
    std::fs::create_dir_all(next_b.join("site")).unwrap();
    std::fs::write(next_b.join("site/page.txt"), "third\n").unwrap();
    std::fs::rename(a.join("b"), tmp.path().join("old-b")).unwrap();
    std::fs::rename(&next_b, a.join("b")).unwrap();
    assert_eq!(get(&c, &url, &[]).await.body, b"third\n");
}

// ---------------------------------------------------------------------------------------------
// Issue #21: nothing written into the media folder runs script in the site's origin.
// ---------------------------------------------------------------------------------------------

/// Files a browser would run, or show as a page that can run script, in the site's origin.
const ACTIVE: &[(&str, &str)] = &[
    ("evil.html", "<script src=\"/media/evil.js\"></script><script>alert(1)</script>"),
    ("evil.htm", "<script>alert(1)</script>"),
    ("evil.xhtml", "<html xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></html>"),
    ("evil.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"),
    ("evil.xml", "<?xml version=\"1.0\"?><x:script xmlns:x=\"http://www.w3.org/1999/xhtml\">alert(1)</x:script>"),
    ("evil.js", "fetch('/api/tokens',{method:'POST'})"),
    ("evil.mjs", "fetch('/api/tokens',{method:'POST'})"),
    ("evil.css", "input[value^=a]{background:url(/x)}"),
];

fn media_csp_stops_script(csp: Option<&str>, what: &str) {
    let csp = csp.unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(directives.contains(&"sandbox"), "{what}: {csp}");
    assert!(directives.contains(&"default-src 'none'"), "{what}: {csp}");
    assert!(!csp.contains("script-src"), "{what}: {csp}");
}

#[tokio::test]
async fn media_files_that_could_run_script_are_sandboxed_downloaded_and_never_script_typed() {
    let tmp = fixture("");
    for (name, body) in ACTIVE {
        std::fs::write(tmp.path().join("media").join(name), body).unwrap();
    }
    let s = start(&tmp, &[]);
    let c = s.admin_client().await;
    for (name, body) in ACTIVE {
        let url = s.url(&format!("/media/{name}"));
        for (how, r) in [
            ("GET", get(&c, &url, &[]).await),
            ("HEAD", fetch(&c, "HEAD", &url, &[]).await),
            ("range", get(&c, &url, &[("range", "bytes=0-3")]).await),
            ("ranges", get(&c, &url, &[("range", "bytes=0-1,3-4")]).await),
        ] {
            let what = format!("{how} {name}");
            assert!(matches!(r.status, 200 | 206), "{what}: {}", r.status);
            media_csp_stops_script(r.h("content-security-policy"), &what);
            assert_eq!(r.h("content-disposition"), Some("attachment"), "{what}");
            assert_eq!(r.h("x-content-type-options"), Some("nosniff"), "{what}");
            let ctype = r.h("content-type").unwrap_or_default();
            // A script or style loader refuses anything but its own types under nosniff.
            for refused in ["javascript", "ecmascript", "text/css"] {
                assert!(!ctype.contains(refused), "{what}: {ctype}");
            }
            if how == "GET" {
                assert_eq!(r.body, body.as_bytes(), "{what}");
            }
        }
    }
    let js = get(&c, &s.url("/media/evil.js"), &[]).await;
    assert_eq!(js.h("content-type"), Some("text/plain; charset=utf-8"));
    // Errors and redirects under /media/ are sandboxed too.
    for path in ["/media/missing.html", "/media/sub", "/media/sub/"] {
        let r = get(&c, &s.url(path), &[]).await;
        media_csp_stops_script(r.h("content-security-policy"), path);
    }
    // The site's own pages keep their policy.
    let page = get(&c, &s.url("/"), &[]).await;
    assert_eq!(page.status, 200);
    let csp = page.h("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("sandbox"),
        "{csp}"
    );
}

#[tokio::test]
async fn media_images_video_audio_pdf_and_text_stay_inline_with_their_types() {
    let tmp = fixture("[media]\npublic = true\nlisting = true\n");
    let m = tmp.path().join("media");
    let files: &[(&str, &str)] = &[
        ("pic.png", "image/png"),
        ("pic.jpg", "image/jpeg"),
        ("pic.webp", "image/webp"),
        ("clip.webm", "video/webm"),
        ("song.mp3", "audio/mpeg"),
        ("doc.pdf", "application/pdf"),
        ("data.json", "application/json; charset=utf-8"),
    ];
    for (name, _) in files {
        std::fs::write(m.join(name), pattern(2000)).unwrap();
    }
    let s = start(&tmp, &[]);
    let c = s.client();
    let mut all: Vec<(&str, &str)> = files.to_vec();
    all.push(("video.mp4", "video/mp4"));
    all.push(("hello.txt", "text/plain; charset=utf-8"));
    for (name, ctype) in all {
        let r = get(&c, &s.url(&format!("/media/{name}")), &[]).await;
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.h("content-type"), Some(ctype), "{name}");
        assert_eq!(r.h("content-disposition"), None, "{name}");
        assert_eq!(r.h("x-content-type-options"), Some("nosniff"), "{name}");
        let csp = r.h("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("script-src"),
            "{name}: {csp}"
        );
        if name == "doc.pdf" {
            // Browsers' PDF viewers keep a PDF's own script away from the page (see MEDIA_PDF_CSP).
            assert!(csp.contains("object-src 'self'"), "{csp}");
        } else {
            media_csp_stops_script(Some(csp), name);
            assert!(
                csp.contains("img-src 'self'") && csp.contains("media-src 'self'"),
                "{csp}"
            );
        }
        // A video player's range request is answered as before.
        let r = get(
            &c,
            &s.url(&format!("/media/{name}")),
            &[("range", "bytes=0-9")],
        )
        .await;
        assert_eq!(r.status, 206, "{name}");
        assert_eq!(r.h("content-type"), Some(ctype), "{name}");
        assert_eq!(r.h("content-disposition"), None, "{name}");
    }
    // Our own listing page is shown, sandboxed.
    let r = get(&c, &s.url("/media/"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.h("content-disposition"), None);
    media_csp_stops_script(r.h("content-security-policy"), "listing");
}
