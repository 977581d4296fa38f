package main

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
)

type fakeFingerprinter struct {
	drivers.DriverPlugin
	ch chan *drivers.Fingerprint
}

func (f *fakeFingerprinter) Fingerprint(context.Context) (<-chan *drivers.Fingerprint, error) {
	return f.ch, nil
}

func TestSlowFingerprintPassesChangesOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan *drivers.Fingerprint)
	d := &slowFingerprintDriver{DriverPlugin: &fakeFingerprinter{ch: in}}
	out, err := d.Fingerprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv := func() *drivers.Fingerprint {
		t.Helper()
		select {
		case fp := <-out:
			return fp
		case <-time.After(10 * time.Second):
			t.Fatal("no fingerprint passed on within 10s")
			return nil
		}
	}
	in <- &drivers.Fingerprint{Health: drivers.HealthStateHealthy, HealthDescription: "first"}
	if fp := recv(); fp.HealthDescription != "first" {
		t.Fatalf("the first fingerprint must pass, got %q", fp.HealthDescription)
	}
	// The same health again, then a change: the repeat is dropped, the
	// change passes.
	in <- &drivers.Fingerprint{Health: drivers.HealthStateHealthy, HealthDescription: "repeat"}
	in <- &drivers.Fingerprint{Health: drivers.HealthStateUnhealthy, HealthDescription: "changed"}
	if fp := recv(); fp.HealthDescription != "changed" {
		t.Fatalf("got %q, want the health change (a repeat within %s is dropped)", fp.HealthDescription, fingerprintEvery)
	}
	close(in)
	select {
	case _, ok := <-out:
		if ok {
			t.Fatal("a fingerprint after the input closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the output did not close with the input")
	}
}
