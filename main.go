// Command fleetplan rolls new software versions out to fleets of edge devices
// running Nomad clients and Consul agents.
package main

import (
	"os"

	"github.com/fleetplan/fleetplan/command"
)

func main() {
	os.Exit(command.Run(os.Args))
}
