package notify

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/fleetplan/fleetplan/scheduler"
)

// SlackPayload is the JSON a slack notifier POSTs: the format of Slack
// incoming webhooks (Mattermost accepts it too). Text is the fallback shown
// in notifications and by clients without blocks.
type SlackPayload struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is a Block Kit block: a section or a context.
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a Block Kit text object.
type SlackText struct {
	Type string `json:"type"` // mrkdwn
	Text string `json:"text"`
}

var slackTitles = map[string]string{
	scheduler.NotifyApprovalNeeded: ":raised_hand: Approval needed",
	scheduler.NotifyPhase:          ":arrow_forward: Rollout moved on",
	scheduler.NotifyRollback:       ":rewind: Rollback",
	scheduler.NotifyHalted:         ":octagonal_sign: Rollout halted",
	scheduler.NotifyDone:           ":white_check_mark: Rollout done",
}

// SlackMessage words a notification as a chat message.
func SlackMessage(n Notification) SlackPayload {
	title := slackTitles[n.Kind]
	if title == "" {
		title = n.Kind
	}
	head := fmt.Sprintf("%s: %s %s", title, n.Rollout, n.Version)
	p := SlackPayload{Text: head + " — " + n.Message}
	p.Blocks = append(p.Blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: "*" + slackEscape(head) + "*\n" + slackEscape(n.Message)}})
	fields := []SlackText{
		{Type: "mrkdwn", Text: "*Phase*\n" + slackEscape(phaseText(n))},
		{Type: "mrkdwn", Text: "*Run*\n" + slackEscape(n.RunID)},
	}
	if n.Analysis != nil {
		fields = append(fields, SlackText{Type: "mrkdwn", Text: "*Analysis*\n" + slackEscape(n.Analysis.Summary)})
	}
	if len(n.Numbers) > 0 {
		var nums []string
		for _, k := range slices.Sorted(maps.Keys(n.Numbers)) {
			nums = append(nums, k+" "+strconv.FormatFloat(n.Numbers[k], 'f', -1, 64))
		}
		fields = append(fields, SlackText{Type: "mrkdwn", Text: "*Numbers*\n" + slackEscape(strings.Join(nums, ", "))})
	}
	p.Blocks = append(p.Blocks, SlackBlock{Type: "section", Fields: fields})
	ctx := "fleetplan · " + n.Time.UTC().Format("2006-01-02 15:04:05 UTC")
	if n.Actor != "" {
		ctx += " · " + n.Actor
	}
	p.Blocks = append(p.Blocks, SlackBlock{Type: "context", Elements: []SlackText{{Type: "mrkdwn", Text: slackEscape(ctx)}}})
	return p
}

func phaseText(n Notification) string {
	if n.Stage != "" {
		return n.Phase + " (" + n.Stage + ")"
	}
	return n.Phase
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
