//go:build integration

package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// chromiumFlags are the flags Chromium needs here: headless as root, and no
// background connections to Google's hosts (the machine's network is closed,
// and refused connections would only slow every start down).
var chromiumFlags = []string{
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--disable-quic",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	"--window-size=1440,1100",
	"--hide-scrollbars",
}

// findChromium returns Debian's Chromium, or fails the test saying how to
// install it: a browser test that skips itself when the browser is missing
// passes without testing anything.
func findChromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	t.Fatalf("headless Chromium is needed for the Consul UI test and is not installed (no `chromium` on PATH, no /usr/bin/chromium): install Debian's package with `apt-get install chromium` (.ci/run does it on CI)")
	return ""
}

// browser is one headless Chromium driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: commands on fd 3, answers on fd 4, each a
// JSON object ended by a NUL byte). Headless Chromium's own --dump-dom and
// --screenshot cannot be used on the Consul UI: they act at the load event,
// before the single-page app has fetched anything, and
// --virtual-time-budget never expires there, because it pauses while a
// request is pending and the UI always has a blocking query pending.
type browser struct {
	cmd     *exec.Cmd
	in      *os.File // our end of fd 3
	out     *os.File // our end of fd 4
	session string   // the page's flat session

	mu      sync.Mutex
	nextID  int64
	waiting map[int64]chan cdpReply
	done    chan struct{} // closed when the reader stops
	readErr error
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// startBrowser starts Chromium with a fresh profile and opens one blank
// page. Chromium's own log goes to dir/chromium.log. The browser is
// closed when the test ends.
func startBrowser(t *testing.T, chromium, dir string) *browser {
	t.Helper()
	profile := t.TempDir() // removed after the browser closed (cleanups run last-in first-out)
	logf, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Chromium reads commands from fd 3 and writes answers to fd 4.
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ansR, ansW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, chromiumFlags...), "--user-data-dir="+profile, "--remote-debugging-pipe", "about:blank")
	cmd := exec.Command(chromium, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{cmdR, ansW}
	// Its own process group, so that the renderer and the other helpers go
	// with it if it has to be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	cmdR.Close()
	ansW.Close()
	b := &browser{cmd: cmd, in: cmdW, out: ansR, waiting: map[int64]chan cdpReply{}, done: make(chan struct{})}
	go b.read()
	t.Cleanup(func() {
		b.close()
		logf.Close()
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		t.Fatalf("opening a page in Chromium (its log: %s): %v", logf.Name(), err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		t.Fatalf("attaching to the page: %v", err)
	}
	b.session = att.SessionID
	return b
}

// read dispatches Chromium's answers to their callers; events are ignored.
func (b *browser) read() {
	defer close(b.done)
	r := bufio.NewReaderSize(b.out, 1<<20)
	for {
		msg, err := r.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.readErr = err
			b.mu.Unlock()
			return
		}
		var m struct {
			ID *int64 `json:"id"`
			cdpReply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == nil {
			continue
		}
		b.mu.Lock()
		ch := b.waiting[*m.ID]
		delete(b.waiting, *m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

// call sends one DevTools command (to the page's session, or to the browser
// when session is "") and decodes its result into result (when not nil).
func (b *browser) call(ctx context.Context, session, method string, params any, result any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("%s: writing to Chromium: %w", method, err)
	}
	select {
	case rep := <-ch:
		if rep.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, rep.Error.Message, rep.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(rep.Result, result)
		}
		return nil
	case <-b.done:
		b.mu.Lock()
		defer b.mu.Unlock()
		return fmt.Errorf("%s: Chromium closed the pipe: %v", method, b.readErr)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// navigate opens url in the page.
func (b *browser) navigate(ctx context.Context, url string) error {
	var res struct {
		ErrorText string `json:"errorText"`
	}
	if err := b.call(ctx, b.session, "Page.navigate", map[string]any{"url": url}, &res); err != nil {
		return err
	}
	if res.ErrorText != "" {
		return fmt.Errorf("navigating to %s: %s", url, res.ErrorText)
	}
	return nil
}

// eval evaluates a JavaScript expression in the page and returns its value
// as a string.
func (b *browser) eval(ctx context.Context, expr string) (string, error) {
	var res struct {
		Result struct {
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(ctx, b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return "", err
	}
	if res.ExceptionDetails != nil {
		return "", fmt.Errorf("evaluating %q: %s", expr, res.ExceptionDetails.Text)
	}
	var s string
	if res.Result.Type != "string" || json.Unmarshal(res.Result.Value, &s) != nil {
		return "", fmt.Errorf("evaluating %q: a %s, not a string", expr, res.Result.Type)
	}
	return s, nil
}

// waitForText waits until the page's visible text contains every one of
// want, and returns that text (or the last text seen, with the error).
func (b *browser) waitForText(ctx context.Context, want []string) (string, error) {
	last := ""
	for {
		text, err := b.eval(ctx, `document.body ? document.body.innerText : ""`)
		if err == nil {
			last = text
			missing := false
			for _, w := range want {
				if !strings.Contains(text, w) {
					missing = true
					break
				}
			}
			if !missing {
				return text, nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return last, err
			}
			return last, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// dom returns the page's DOM serialized, as --dump-dom prints it.
func (b *browser) dom(ctx context.Context) (string, error) {
	return b.eval(ctx, `document.documentElement.outerHTML`)
}

// screenshot captures the page as PNG: the window's width and the whole
// height of the document (the viewport is made as tall as the document, so
// that fixed elements such as the Consul UI's side bar are drawn along all
// of it).
func (b *browser) screenshot(ctx context.Context) ([]byte, error) {
	var m struct {
		CSSLayoutViewport struct {
			ClientWidth int `json:"clientWidth"`
		} `json:"cssLayoutViewport"`
		CSSContentSize struct {
			Height float64 `json:"height"`
		} `json:"cssContentSize"`
	}
	if err := b.call(ctx, b.session, "Page.getLayoutMetrics", map[string]any{}, &m); err != nil {
		return nil, err
	}
	width, height := m.CSSLayoutViewport.ClientWidth, int(m.CSSContentSize.Height+0.5)
	if width > 0 && height > 0 {
		err := b.call(ctx, b.session, "Emulation.setDeviceMetricsOverride", map[string]any{
			"width": width, "height": min(height, 16384), "deviceScaleFactor": 1, "mobile": false,
		}, nil)
		if err != nil {
			return nil, err
		}
		defer func() { _ = b.call(ctx, b.session, "Emulation.clearDeviceMetricsOverride", map[string]any{}, nil) }()
	}
	var res struct {
		Data string `json:"data"`
	}
	if err := b.call(ctx, b.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &res); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(res.Data)
}

// close asks Chromium to quit, and kills its process group if it does not
// within ten seconds.
func (b *browser) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = b.call(ctx, "", "Browser.close", map[string]any{}, nil)
	cancel()
	b.in.Close()
	exited := make(chan error, 1)
	go func() { exited <- b.cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	b.out.Close()
}
