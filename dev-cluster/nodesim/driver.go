package main

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/drivers/mock"
	"github.com/hashicorp/nomad/helper/pluginutils/loader"
	"github.com/hashicorp/nomad/plugins/drivers"
)

// fingerprintEvery is how often a simulated client's driver reports a
// fingerprint that did not change: the period of Nomad's real task drivers
// (docker, exec, raw_exec: 30 s).
const fingerprintEvery = 30 * time.Second

// mockDriverPlugin is Nomad's mock driver ("mock_driver") with the
// fingerprint period of a real driver. The mock driver fingerprints every
// 500 ms (a test artefact), and each fingerprint makes the Nomad client
// copy its whole configuration: with a thousand clients in one process,
// 2,000 copies a second.
var mockDriverPlugin = &loader.InternalPluginConfig{
	Config: mock.PluginConfig.Config,
	Factory: func(ctx context.Context, l hclog.Logger) interface{} {
		return &slowFingerprintDriver{DriverPlugin: mock.NewMockDriver(ctx, l)}
	},
}

// slowFingerprintDriver passes a fingerprint on when its health changed or
// fingerprintEvery after the last one passed on.
type slowFingerprintDriver struct {
	drivers.DriverPlugin
}

func (d *slowFingerprintDriver) Fingerprint(ctx context.Context) (<-chan *drivers.Fingerprint, error) {
	in, err := d.DriverPlugin.Fingerprint(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan *drivers.Fingerprint)
	go func() {
		defer close(out)
		var last time.Time
		var health drivers.HealthState
		for {
			var fp *drivers.Fingerprint
			var ok bool
			select {
			case <-ctx.Done():
				return
			case fp, ok = <-in:
				if !ok {
					return
				}
			}
			if !last.IsZero() && fp.Health == health && fp.Err == nil && time.Since(last) < fingerprintEvery {
				continue
			}
			last, health = time.Now(), fp.Health
			select {
			case <-ctx.Done():
				return
			case out <- fp:
			}
		}
	}()
	return out, nil
}
