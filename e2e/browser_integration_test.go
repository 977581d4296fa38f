//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// findChromium returns Debian's Chromium, or fails the test saying how to
// install it: a browser test that skips itself when the browser is missing
// passes without testing anything. `make test` installs it (make
// test-deps).
func findChromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatalf("headless Chromium is needed for the Consul UI test and is not installed (no `chromium` on PATH, no /usr/bin/chromium): run `make test-deps` (as root, or with sudo), or install Debian's package with `apt-get install chromium`")
	return ""
}

// newBrowser starts headless Chromium with chromedp (a fresh profile; its
// own log in dir/chromium.log) and returns the context of its one tab. The
// browser stops when the test ends. Chromium runs as root here, so without
// its sandbox, and makes no background connections to Google's hosts (the
// machine's network is closed: refused connections would only slow every
// start down).
func newBrowser(t *testing.T, ctx context.Context, chromium, dir string) context.Context {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1440, 1100),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.CombinedOutput(logf),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		logf.Close()
		os.RemoveAll(filepath.Join(dir, "profile"))
	})
	// The first action starts the browser, on the tab's own context (a
	// context with a deadline would stop the browser with it).
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting Chromium (%s; its log: %s): %v", chromium, logf.Name(), err)
	}
	return bctx
}

// showsAll is a JavaScript predicate: the page's visible text contains
// every one of want.
func showsAll(want []string) string {
	list, _ := json.Marshal(want)
	return `(() => { const t = document.body ? document.body.innerText : ""; return ` + string(list) + `.every(w => t.includes(w)); })()`
}

// pageText is the page's visible text.
func pageText(ctx context.Context) string {
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(cannot read the page's text: " + err.Error() + ")"
	}
	return text
}

// waitShown waits up to timeout until the page shows every one of want
// (the Consul UI renders after its API calls, so the load event is too
// early).
func waitShown(ctx context.Context, want []string, timeout time.Duration) error {
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](showsAll(want),
		chromedp.WithPollingInterval(250*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	return err
}
