package command

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:  "version",
		Usage: "print fleetplan's version",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "fleetplan v%s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	})
}
