package hcl

import (
	"errors"
	"os"
	"path/filepath"
	"sort"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Parser reads policy files. It keeps every file it parsed, so that
// diagnostics can be printed with their source snippets (Files), and the
// rollouts it has seen, so that a label used twice across files is reported.
// A Parser is not safe for concurrent use.
type Parser struct {
	p *hclparse.Parser
	// rollouts maps each application name to the range of its first rollout.
	rollouts map[string]hcl2.Range
	// seen holds the cleaned absolute paths already parsed, so that a file
	// named twice is read once.
	seen map[string]bool
	// order numbers the files in the order they were given, for sorting
	// diagnostics.
	order map[string]int
}

// NewParser returns an empty Parser.
func NewParser() *Parser {
	return &Parser{
		p:        hclparse.NewParser(),
		rollouts: map[string]hcl2.Range{},
		seen:     map[string]bool{},
		order:    map[string]int{},
	}
}

// Files returns the files parsed so far, keyed by the file name used in
// diagnostics, for hcl.NewDiagnosticTextWriter.
func (p *Parser) Files() map[string]*hcl2.File { return p.p.Files() }

// ParseFile reads and decodes one policy file. Relative paths in it are
// resolved against the file's folder. The policies are returned only when
// there are no errors (warnings alone do not prevent it); the diagnostics
// are sorted by position.
func (p *Parser) ParseFile(path string) ([]*scheduler.Policy, hcl2.Diagnostics) {
	if p.alreadySeen(path) {
		return nil, nil
	}
	src, err := readPolicyFile(path)
	var tooLarge *tooLargeError
	switch {
	case errors.As(err, &tooLarge):
		return nil, hcl2.Diagnostics{errPolicyTooLarge(path, tooLarge)}
	case err != nil:
		return nil, hcl2.Diagnostics{errReadFile(path, err)}
	}
	return p.parse(path, src)
}

// ParseSource decodes a policy held in memory as if it had been read from
// filename: relative paths in it are resolved against filepath.Dir(filename).
func (p *Parser) ParseSource(filename string, src []byte) ([]*scheduler.Policy, hcl2.Diagnostics) {
	if p.alreadySeen(filename) {
		return nil, nil
	}
	return p.parse(filename, src)
}

func (p *Parser) alreadySeen(path string) bool {
	key := path
	if abs, err := filepath.Abs(path); err == nil {
		key = abs
	}
	if p.seen[key] {
		return true
	}
	p.seen[key] = true
	p.order[path] = len(p.order)
	return false
}

func (p *Parser) parse(filename string, src []byte) ([]*scheduler.Policy, hcl2.Diagnostics) {
	file, diags := p.p.ParseHCL(src, filename)
	if file == nil || file.Body == nil {
		return nil, diags
	}
	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		dir = filepath.Dir(filename)
	}
	d := &decoder{dir: dir, src: src, diags: diags}
	// A syntax error leaves a partial body; decoding it anyway would pile
	// follow-on errors on top of the real one, so only its structure is
	// checked then.
	syntaxOK := !diags.HasErrors()

	if r, ok := nomadJob(file); ok {
		d.add(errJobspecGiven(r))
		return nil, d.diags
	}

	c := d.content(file.Body, fileSpec)
	// notify blocks at the top level apply to every rollout of the file.
	if syntaxOK {
		d.fileNotify = d.notifyBlocks(blocksOf(c)["notify"], nil)
	}
	var policies []*scheduler.Policy
	n := 0
	for _, b := range c.Blocks {
		if b.Type != "rollout" {
			continue
		}
		n++
		name := b.Labels[0]
		if first, dup := p.rollouts[name]; dup {
			d.add(errDuplicateRollout(b.LabelRanges[0], name, first))
		} else {
			p.rollouts[name] = b.DefRange
		}
		if syntaxOK {
			policies = append(policies, d.rollout(b))
		}
	}
	if sb, ok := file.Body.(*hclsyntax.Body); ok {
		for _, b := range sb.Blocks {
			if b.Type == "rollout" && len(b.Labels) == 0 {
				n++ // reported as a label problem
			}
		}
	}
	if n == 0 && syntaxOK {
		d.add(errNoRollout(fileStart(file, filename)))
	}
	p.sort(d.diags)
	if d.diags.HasErrors() {
		return nil, d.diags
	}
	return policies, d.diags
}

// nomadJob recognises a Nomad jobspec given instead of a policy: a file
// with a job block and no rollout block. It returns the job block's range.
func nomadJob(f *hcl2.File) (hcl2.Range, bool) {
	sb, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return hcl2.Range{}, false
	}
	var job *hclsyntax.Block
	for _, b := range sb.Blocks {
		switch b.Type {
		case "rollout":
			return hcl2.Range{}, false
		case "job":
			if job == nil {
				job = b
			}
		}
	}
	if job == nil {
		return hcl2.Range{}, false
	}
	return job.DefRange(), true
}

// sort orders diagnostics by file (in the order the files were given) and
// position; those without a position come first.
func (p *Parser) sort(diags hcl2.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return p.order[a.Filename] < p.order[b.Filename]
		}
		return a.Start.Byte < b.Start.Byte
	})
}

func fileStart(f *hcl2.File, filename string) hcl2.Range {
	if sb, ok := f.Body.(*hclsyntax.Body); ok {
		return hcl2.Range{Filename: filename, Start: sb.SrcRange.Start, End: sb.SrcRange.Start}
	}
	return hcl2.Range{Filename: filename, Start: hcl2.InitialPos, End: hcl2.InitialPos}
}

// ParseFiles reads and decodes policy files. A rollout label used more than
// once across the files is an error. The policies are returned only when no
// file has errors; the diagnostics of all files are returned, sorted by file
// and position.
func ParseFiles(paths ...string) ([]*scheduler.Policy, hcl2.Diagnostics) {
	policies, _, diags := ParseFilesWithSources(paths...)
	return policies, diags
}

// ParseFilesWithSources is ParseFiles that also returns the parsed files, for
// printing diagnostics with WriteDiagnostics.
func ParseFilesWithSources(paths ...string) ([]*scheduler.Policy, map[string]*hcl2.File, hcl2.Diagnostics) {
	p := NewParser()
	var all []*scheduler.Policy
	var diags hcl2.Diagnostics
	for _, path := range paths {
		ps, ds := p.ParseFile(path)
		all = append(all, ps...)
		diags = append(diags, ds...)
	}
	p.sort(diags)
	if diags.HasErrors() {
		return nil, p.Files(), diags
	}
	return all, p.Files(), diags
}

// ParseSource decodes one policy held in memory as if read from filename;
// relative paths (the jobspec) are resolved against filepath.Dir(filename).
func ParseSource(filename string, src []byte) ([]*scheduler.Policy, hcl2.Diagnostics) {
	return NewParser().ParseSource(filename, src)
}

// PolicyGlob names the policy files a folder stands for.
const PolicyGlob = "*.fleet.hcl"

// ExpandPaths turns command-line arguments into policy files: a folder
// stands for the *.fleet.hcl files in it (not its subfolders), in name
// order; anything else is kept as given, for the parser to read or report.
// A folder without policy files is an error.
func ExpandPaths(args []string) ([]string, hcl2.Diagnostics) {
	var paths []string
	var diags hcl2.Diagnostics
	for _, a := range args {
		info, err := os.Stat(a)
		if err != nil || !info.IsDir() {
			paths = append(paths, a)
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(a, PolicyGlob))
		sort.Strings(matches)
		if len(matches) == 0 {
			diags = append(diags, errNoPolicyFiles(a))
		}
		paths = append(paths, matches...)
	}
	return paths, diags
}
