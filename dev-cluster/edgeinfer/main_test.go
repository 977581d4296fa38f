package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const runMainEnv = "EDGEINFER_TEST_RUN_MAIN"

// TestMain lets the tests run the real main (signals, os.Exit and all) by
// starting the test binary itself with EDGEINFER_TEST_RUN_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// mainCmd is the program as Nomad would start it, with only env set.
func mainCmd(t *testing.T, env map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// No process outlives its test, even when the program hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, exe, args...)
	// GORACE: a -race binary otherwise sleeps 1s at a clean exit.
	cmd.Env = []string{runMainEnv + "=1", "PATH=" + os.Getenv("PATH"), "GORACE=atexit_sleep_ms=0"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("running: %v", err)
	}
	return ee.ExitCode()
}

func TestProcessCrashFault(t *testing.T) {
	cmd := mainCmd(t, map[string]string{envCrash: "1", envVersionMeta: "2.0.0+r5"}, "-addr", "127.0.0.1:0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	code := exitCode(t, cmd.Run())
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	out := stderr.String()
	for _, want := range []string{"version=2.0.0", "build=2.0.0+r5", "simulated crash", envCrash} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "listening") {
		t.Errorf("crashed process listened:\n%s", out)
	}
}

func TestProcessBadConfig(t *testing.T) {
	cmd := mainCmd(t, map[string]string{envSlow: "very"}, "-addr", "127.0.0.1:0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if code := exitCode(t, cmd.Run()); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), envSlow) {
		t.Errorf("stderr does not name the bad variable:\n%s", stderr.String())
	}
}

func TestProcessListenFailure(t *testing.T) {
	cmd := mainCmd(t, nil, "-addr", "256.0.0.1:1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if code := exitCode(t, cmd.Run()); code != 1 {
		t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
	}
}

func TestProcessVersionFlag(t *testing.T) {
	cmd := mainCmd(t, map[string]string{envVersion: "1.2.3+abc"}, "-version")
	out, err := cmd.Output()
	if exitCode(t, err) != 0 || strings.TrimSpace(string(out)) != "edgeinfer 1.2.3 (build 1.2.3+abc)" {
		t.Errorf("-version: %q, %v", out, err)
	}
}

var listenRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startProcess starts the program on a free port and returns its base URL
// and a function that waits for exit and returns the code and full stderr.
func startProcess(t *testing.T, env map[string]string) (*exec.Cmd, string, func() (int, string)) {
	t.Helper()
	cmd := mainCmd(t, env, "-addr", "127.0.0.1:0")
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var buf strings.Builder
	addrc := make(chan string, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			buf.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	wait := func() (int, string) {
		<-readDone
		err := cmd.Wait()
		mu.Lock()
		defer mu.Unlock()
		return exitCode(t, err), buf.String()
	}
	select {
	case addr := <-addrc:
		return cmd, "http://" + addr, wait
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		_, out := wait()
		t.Fatalf("no listening line:\n%s", out)
	}
	return nil, "", nil
}

func TestProcessServesAndStopsGracefully(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, url, wait := startProcess(t, map[string]string{envVersionMeta: "3.0.0+r1", envSlow: "150ms"})
			resp, err := http.Get(url + "/health")
			if err != nil {
				t.Fatal(err)
			}
			var h healthResponse
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if resp.StatusCode != 200 || h.Status != "healthy" || h.Version != "3.0.0" {
				t.Errorf("/health: %d %+v", resp.StatusCode, h)
			}
			// The real clock and sleep are wired: the slow fault really waits.
			start := time.Now()
			resp, err = http.Post(url+"/infer", "application/json", strings.NewReader(`{"image":"cat.jpg"}`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if took := time.Since(start); took < 150*time.Millisecond {
				t.Errorf("slow /infer took %v, want >= 150ms", took)
			}
			if !strings.Contains(string(body), `"label":"cat"`) {
				t.Errorf("/infer: %s", body)
			}

			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			type result struct {
				code int
				out  string
			}
			res := make(chan result, 1)
			go func() { c, o := wait(); res <- result{c, o} }()
			select {
			case r := <-res:
				if r.code != 0 {
					t.Errorf("exit code %d after %v, want 0:\n%s", r.code, sig, r.out)
				}
				for _, want := range []string{"version=3.0.0", "shutting down", "received " + sig.String(), "msg=stopped"} {
					if !strings.Contains(r.out, want) {
						t.Errorf("stderr lacks %q:\n%s", want, r.out)
					}
				}
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				t.Fatalf("process did not stop within 10s of %v", sig)
			}
		})
	}
}

func TestProcessShutdownCutsInjectedDelay(t *testing.T) {
	// A request sleeping in a long injected delay must not hold up a stop.
	cmd, url, wait := startProcess(t, map[string]string{envSlow: "1m"})
	reqDone := make(chan int, 1)
	go func() {
		resp, err := http.Post(url+"/infer", "application/json", strings.NewReader(`{"image":"cat.jpg"}`))
		if err != nil {
			reqDone <- -1
			return
		}
		resp.Body.Close()
		reqDone <- resp.StatusCode
	}()
	time.Sleep(200 * time.Millisecond) // let the request reach its delay
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	code, out := wait()
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("stop took %v with a request in an injected delay", took)
	}
	if code != 0 {
		t.Errorf("exit code %d:\n%s", code, out)
	}
	select {
	case c := <-reqDone:
		if c != 200 {
			t.Errorf("in-flight request got %d, want an answer (200)", c)
		}
	case <-time.After(5 * time.Second):
		t.Error("in-flight request never answered")
	}
}
