package plugin

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// snippet shortens s to at most n bytes (on a rune boundary), on one line,
// for error messages and probe output.
func snippet(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return truncateUTF8(s, n) + "…"
}

// quoteSnippet quotes a value as written, shortened, for error messages.
func quoteSnippet(s string) string {
	if len(s) > 80 {
		return strconv.Quote(truncateUTF8(s, 80)) + "…"
	}
	return strconv.Quote(s)
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// fmtDuration rounds a measured duration for people: 12ms, 1.5s, 850µs.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		d = d.Round(100 * time.Millisecond)
	case d >= time.Second:
		d = d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		d = d.Round(time.Millisecond)
	default:
		d = d.Round(time.Microsecond)
	}
	return d.String()
}
