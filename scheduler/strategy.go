package scheduler

// StrategyRisk says what a strategy risks, the way the field ranks them;
// `plan` prints it before a rollout starts.
func StrategyRisk(s Strategy) string {
	switch s {
	case StrategyBlueGreen:
		return "lowest risk: the old slot stays running as a hot standby and a rollback moves the traffic back in seconds; needs room for two slots on every device"
	case StrategyCanaryRolling:
		return "low risk: a canary and health-gated waves; a rollback switches devices back to the old slot (it restarts there)"
	case StrategyRollingUpdate:
		return "medium risk: no hot standby; batches of max_parallel devices, each health-gated; a rollback re-deploys the previous version on each device from its unchanged slot job (a cold start)"
	case StrategyAB:
		return "low risk: part of the fleet keeps the old version for the comparison; a rollback switches devices back to the old slot"
	}
	return "unknown strategy"
}
