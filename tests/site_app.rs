//! The chat page as an installable app, over HTTPS against the binary (issue 26): the manifest,
//! icons and service worker are public and say nothing of the site's users; a missing `/media/` file
//! is an HTML page for a browser and JSON for an API client; only a PDF may be framed, and only by
//! the site itself. (What the service worker keeps is checked in Chromium: tests/browser/app.test.mjs.)

mod common;

use common::*;

#[tokio::test]
async fn the_manifest_icons_and_service_worker_need_no_login() {
    let s = Server::start();
    let c = s.client();
    let r = c.get(s.url("/manifest.webmanifest")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/manifest+json"
    );
    let manifest: serde_json::Value = r.json().await.unwrap();
    assert_eq!(manifest["start_url"], "/");
    assert_eq!(manifest["scope"], "/");
    assert_eq!(manifest["display"], "standalone");
    let icons = manifest["icons"].as_array().unwrap();
    for icon in icons {
        let src = icon["src"].as_str().unwrap();
        let r = c.get(s.url(src)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{src}");
    }
    assert!(icons.iter().any(|i| i["purpose"] == "maskable"));

    let r = c.get(s.url("/sw.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["service-worker-allowed"], "/");
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    // The page's policy lets the worker and the manifest load, and nothing from elsewhere.
    let r = c.get(s.url("/login")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("worker-src 'self'") && csp.contains("manifest-src 'self'"));
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
}

#[tokio::test]
async fn a_missing_media_file_is_a_page_for_a_browser_and_json_for_an_api_client() {
    let s = Server::start();
    let c = s.admin_client().await;
    let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let r = c
        .get(s.url("/media/gone%20%3Cb%3E.png"))
        .header("accept", html)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["content-type"],
        "text/html; charset=utf-8",
        "a browser's navigation gets a page"
    );
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let body = r.text().await.unwrap();
    assert!(body.contains("File not found"));
    assert!(body.contains("href=\"/\""), "a way back: {body}");
    assert!(
        body.contains("/media/gone &lt;b&gt;.png"),
        "escaped: {body}"
    );
    assert!(!body.contains("<b>"));

    for accept in ["application/json", "*/*", "image/avif,image/webp,*/*"] {
        let r = c
            .get(s.url("/media/gone.png"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "not_found", "{accept}");
    }
}

#[tokio::test]
async fn only_a_pdf_may_be_framed_and_only_by_the_site_itself() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("media")).unwrap();
    std::fs::write(tmp.path().join("media/doc.pdf"), b"%PDF-1.4\n%%EOF\n").unwrap();
    std::fs::write(tmp.path().join("media/pic.png"), b"not really a png").unwrap();
    let s = Server::start_with(Start::default().in_dir(tmp.path()));
    let c = s.admin_client().await;
    let r = c.get(s.url("/media/doc.pdf")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "SAMEORIGIN");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    for path in ["/media/pic.png", "/", "/api/me", "/sw.js"] {
        let r = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
}
