package hcl

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// Wording helpers the diagnostics share: lists in prose, numbers, articles,
// places in a file.

func homesText(homes []string) string {
	parts := make([]string, len(homes))
	for i, h := range homes {
		if h == "" {
			parts[i] = "the top level of the file"
		} else {
			parts[i] = article(h) + " " + h + " block"
		}
	}
	return joinList(parts, "or")
}

func quotedList(items []string, conj string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return joinList(q, conj)
}

func joinList(items []string, conj string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	case 2:
		return items[0] + " " + conj + " " + items[1]
	}
	return strings.Join(items[:len(items)-1], ", ") + " " + conj + " " + items[len(items)-1]
}

// shortRange names a range as "file:line".
func shortRange(r hcl2.Range) string {
	return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line)
}

func fmtNum(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && s != ""
}

// unwrapPathError drops the operation and path from an *fs.PathError, which
// the messages already name.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// article is the indefinite article for a block name.
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
