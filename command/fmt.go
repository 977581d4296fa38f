package command

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/hcl"
)

func init() {
	register(&cli.Command{
		Name:      "fmt",
		Usage:     "rewrite rollout policy files in the canonical format",
		ArgsUsage: "FILE|DIR|-...",
		Description: `Formats policy files the canonical way (hclwrite: indentation, aligned
equals signs, spacing). Only the layout changes, never the meaning; a file
that does not parse is reported and left alone. A folder stands for the
*.fleet.hcl files in it; "-" reads standard input.

With neither flag, the formatted files are printed to standard output.
-check lists the files that are not formatted and exits 1 if there is any;
-write rewrites them in place and lists them. Both together rewrite and
exit 1 when something changed (for a pre-commit hook).

Exit status: 0 when all is well, 1 when -check found a file to format or a
file does not parse, 2 on usage errors.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "check", Usage: "list the files that are not formatted, and exit 1 if there is any"},
			&cli.BoolFlag{Name: "write", Aliases: []string{"w"}, Usage: "rewrite the files in place"},
			&cli.BoolFlag{Name: "no-color", Usage: "print diagnostics without colors (also when NO_COLOR is set)"},
		},
		Action: fmtAction,
	})
}

func fmtAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return exit(ExitUsage, "fmt: give at least one policy file, folder, or - for standard input\nUsage: fleetplan fmt [-check] [-write] FILE|DIR|-...")
	}
	check, write := c.Bool("check"), c.Bool("write")
	args := c.Args().Slice()
	for _, a := range args {
		if a == "-" && write {
			return exit(ExitUsage, "fmt: -write cannot rewrite standard input")
		}
	}

	paths, diags := hcl.ExpandPaths(args)
	files := map[string]*hcl2.File{}
	var changed, broken []string
	for _, path := range paths {
		src, err := readSource(c, path)
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "Error: cannot read %s: %v\n", path, unwrapPathErr(err))
			broken = append(broken, path)
			continue
		}
		// Refuse to format what does not parse: the result would be a guess.
		f, pdiags := hclsyntax.ParseConfig(src, path, hcl2.InitialPos)
		files[path] = f
		if pdiags.HasErrors() {
			diags = append(diags, pdiags...)
			broken = append(broken, path)
			continue
		}
		out := hclwrite.Format(src)
		isChanged := !bytes.Equal(src, out)
		if isChanged {
			changed = append(changed, path)
		}
		switch {
		case write && isChanged:
			if err := writeFileAtomic(path, out); err != nil {
				return exit(ExitInvalid, "fmt: %v", err)
			}
			fmt.Fprintln(c.App.Writer, path)
		case check && isChanged && !write:
			fmt.Fprintln(c.App.Writer, path)
		case !check && !write:
			if _, err := c.App.Writer.Write(out); err != nil {
				return exit(ExitInternal, "fmt: %v", err)
			}
		}
	}

	if len(diags) > 0 {
		if err := hcl.WriteDiagnostics(c.App.ErrWriter, files, diags, useColor(c)); err != nil {
			return exit(ExitInternal, "fmt: %v", err)
		}
	}
	switch {
	case diags.HasErrors() || len(broken) > 0:
		return exit(ExitInvalid, "fmt: %s could not be formatted.", plural(max(len(broken), 1), "file"))
	case check && len(changed) > 0 && write:
		return exit(ExitInvalid, "fmt: %s reformatted.", plural(len(changed), "file"))
	case check && len(changed) > 0:
		return exit(ExitInvalid, "fmt: %s not formatted; run fleetplan fmt -write to fix.", plural(len(changed), "file"))
	}
	return nil
}

// readSource reads a file, or standard input for "-".
func readSource(c *cli.Context, path string) ([]byte, error) {
	if path == "-" {
		r := c.App.Reader
		if r == nil {
			r = os.Stdin
		}
		return io.ReadAll(r)
	}
	return os.ReadFile(path)
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// writeFileAtomic replaces path with data through a temporary file in the
// same folder, keeping the file's permissions, so that an interrupted write
// never leaves half a policy behind.
func writeFileAtomic(path string, data []byte) (err error) {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(info.Mode().Perm()); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
