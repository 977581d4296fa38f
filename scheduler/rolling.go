package scheduler

import "fmt"

// Rolling-update on the two-slot design.
//
// The field's rolling-update is for homogeneous fleets without spare
// capacity: one allocation per device, devices updated in batches of
// max_parallel with a health gate per batch, a rollback that re-deploys the
// previous version. fleetplan runs it on the same two slot jobs:
//
//   - one slot per device: a switch stops the old allocation before Nomad
//     places the candidate (the slot metadata names one colour), so a
//     device never needs room for two;
//   - batches: after the canary, every wave is cut into stages of at most
//     max_parallel devices (in the planner's stratified order), each with
//     the wave's soak and the same gate (failure threshold, fail fast,
//     rollback) as any stage;
//   - no approval step after the canary unless the policy writes
//     canary.approval = "manual" (the policy decoder defaults it to auto
//     for this strategy);
//   - a rollback re-deploys the previous version from its job: the active
//     slot's job is never modified during a rollout, so its current Nomad
//     job version *is* the previous release; switching a device back makes
//     Nomad place it again (a cold start, seconds to tens of seconds, not a
//     traffic switch: hence "medium risk").
//
// The trade-off against a one-job rolling update (Nomad's update block,
// or a re-registration of the previous job version): two jobs stay
// registered, but the previous version is never re-submitted, so a
// rollback needs nothing of the new version and nothing of the job
// history, and every device is gated by the same checks as the other
// strategies.

// rollingBatches cuts a rolling-update plan's waves into batches of at most
// max_parallel devices; the canary stays as planned.
func rollingBatches(p *Policy, plan *Plan) {
	size := max(p.MaxParallel, 1)
	out := make([]PlannedStage, 0, len(plan.Stages))
	cumulative := 0
	batch := 0
	for _, st := range plan.Stages {
		if st.Canary || len(st.Devices) <= size {
			if !st.Canary {
				batch++
				st.Name = fmt.Sprintf("batch %d (%s)", batch, st.Name)
			}
			cumulative += len(st.Devices)
			st.CumulativeDevices = cumulative
			out = append(out, st)
			continue
		}
		for i := 0; i < len(st.Devices); i += size {
			devs := st.Devices[i:min(i+size, len(st.Devices))]
			batch++
			b := PlannedStage{
				Name:     fmt.Sprintf("batch %d (%s)", batch, st.Name),
				Soak:     st.Soak,
				Devices:  devs,
				PerClass: map[string]int{},
			}
			for c := range st.PerClass {
				b.PerClass[c] = 0
			}
			for _, d := range devs {
				b.PerClass[d.Class]++
				if d.Offline {
					b.Offline++
				}
			}
			cumulative += len(devs)
			b.CumulativeDevices = cumulative
			if plan.Deployable > 0 {
				b.ActualPercent = percentOf(cumulative, plan.Deployable)
			}
			b.Percent = b.ActualPercent
			if i+size >= len(st.Devices) {
				b.Percent = st.Percent
			}
			out = append(out, b)
		}
	}
	plan.Stages = out
}
