// Package notify tells people and systems about a rollout: approvals
// needed, phase changes, rollbacks, halts and the end. It builds the
// notifiers of a policy's notify blocks (and of apply's -notify flags) for
// whichever controller runs the rollout: the in-process apply or the
// controller service.
//
// The specs (scheduler.NotifierSpec) hold references to secrets (env.NAME,
// nomad_var("path", "item")), never values. New resolves them, once, when
// it builds the notifiers; the values live only in the notifiers' memory,
// and every error and log line of this package is passed through a redactor
// that replaces them (and URL paths, which carry the secret of chat
// webhooks) before it is returned or written.
//
// Delivery is asynchronous: each notifier has its own bounded queue and
// goroutine, so a slow or failing webhook never holds up the rollout or the
// other notifiers; a full queue drops the notification with a warning.
// Every delivery ends with one log line (delivered, or failed with the
// redacted reason). Webhook and Slack deliveries go through
// hashicorp/go-retryablehttp: network errors, 429 and 5xx (except 501) are
// retried with exponential backoff, honouring Retry-After on 429 and 503,
// within a per-delivery timeout; other 4xx answers fail at once.
//
// The webhook payload is Notification as JSON:
//
//	{
//	  "kind": "rollback",               // approval-needed | phase | rollback | halted | done
//	  "notifier": "ops",                // the notify block's name
//	  "time": "2026-12-01T17:30:00Z",
//	  "rollout": "detector",            // the application
//	  "run_id": "detector-20261201-173000",
//	  "version": "2.4.1",               // the release being rolled out
//	  "phase": "WAVE",
//	  "stage": "wave 1",                // omitted outside a stage
//	  "action": "decision:rollback",    // the controller event
//	  "actor": "alice@laptop",          // omitted when unknown
//	  "message": "wave 1 failed its gate: ...; what to do next, if anything",
//	  "numbers": {"failed": 2},         // omitted when empty
//	  "analysis": {"kind": "compatibility", "summary": "...", "classes": ["rpi"], "layer": 3}
//	}
//
// The slack type posts {"text": ..., "blocks": [...]} (Slack and Mattermost
// incoming webhooks); the log type writes one hclog line per notification.
package notify
