// Command espy is a DPI middlebox with ESP-NULL visibility.
//
//	espy replay [flags] FILE...   analyze captures offline
//	espy run --iface IF [--iface IF2] [--config FILE]   the inline appliance
//	espy policy check|decorrelate|bench ...   validate and measure an SPD
//	espy ike status|initiate NAME|terminate NAME|reload   control espy run's tunnels
//
// Run "espy COMMAND --help" for a command's flags.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/espy-dpi/espy/ike/ikecmd"
	"github.com/espy-dpi/espy/policy/policycmd"
)

const usage = `usage: espy COMMAND [flags] [args]

Commands:
  replay    analyze pcap/pcapng captures: per-flow ESP-NULL verdicts (RFC 5879)
  run       the inline appliance: XDP fast path on one or two interfaces
  policy    check, decorrelate or benchmark a security policy (SPD)
  ike       status, initiate NAME, terminate NAME, reload of espy run's tunnels; or the IKEv2 stack standalone
  version   print the version

Run "espy COMMAND --help" for a command's flags and exit codes.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "replay":
		return replayMain(args[1:], stdin, stdout, stderr)
	case "policy":
		return policycmd.Main(args[1:], stdout, stderr)
	case "run":
		return runMain(args[1:], stdout, stderr)
	case "ike":
		return ikecmd.Main(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "espy", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "espy: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// Exit codes shared by the commands.
const (
	exitOK     = 0 // everything read and written
	exitInput  = 1 // an input could not be read entirely (verdicts before the fault were written)
	exitUsage  = 2 // bad command line
	exitOutput = 3 // an output could not be written
)
