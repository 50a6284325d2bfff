package ikecmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/ike/ikeservice"
)

const controlUsage = `usage: espy ike status [--socket PATH] [--json]
       espy ike initiate [--socket PATH] NAME
       espy ike terminate [--socket PATH] NAME
       espy ike reload [--socket PATH] [--json]

Talk to the IKE daemon of a running "espy run" over its control socket
(default ` + config.DefaultSocket + `, the config's ike.socket):
  status      list tunnels, their IKE SAs and Child SAs (--json: the
              protocol's status object, docs/ike.md)
  initiate    bring the tunnel NAME up and wait until it is (a start tunnel
              is kept up again from then on)
  terminate   delete the tunnel's IKE SA and Child SAs with an
              INFORMATIONAL Delete (a start tunnel stays down until
              "initiate")
  reload      re-read the policy section of espy run's configuration file
              (as SIGHUP does): a bad policy is rejected and the old one
              stays; Child SAs the new SPD cuts into are rekeyed with
              narrowed selectors or deleted, and listed

"espy ike initiate" with any other flag or with an IP address runs the
standalone initiator instead ("espy ike initiate -h"); tunnel names are
never IP addresses.

exit status: 0 done; 1 refused or failed (unknown tunnel, no IKE SA,
exchange failed, policy rejected); 2 bad command line; 3 no service on
the socket.
`

// Exit codes of the control commands.
const (
	exitRefused   = 1
	exitUsage     = 2
	exitNoService = 3
)

// controlMain runs status, terminate, and initiate in its control form; ok
// is false when args are for the standalone initiator.
func controlMain(ctx context.Context, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	cmd := args[0]
	switch cmd {
	case "status", "terminate", "reload":
	case "initiate":
		if !controlForm(args[1:]) {
			return 0, false
		}
	default:
		return 0, false
	}
	fs := flag.NewFlagSet("espy ike "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, controlUsage) }
	sock := fs.String("socket", config.DefaultSocket, "control socket of espy run's IKE daemon")
	asJSON := false
	if cmd == "status" || cmd == "reload" {
		fs.BoolVar(&asJSON, "json", false, "print the answer as JSON")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return exitUsage, true
	}
	req := ikeservice.Request{Command: cmd}
	wait := 10 * time.Second
	switch cmd {
	case "status", "reload":
		if fs.NArg() != 0 {
			fmt.Fprintf(stderr, "espy ike %s: unexpected argument %q\n", cmd, fs.Arg(0))
			return exitUsage, true
		}
		if cmd == "reload" {
			wait = 6 * time.Minute // the server bounds a reload to 5 minutes
		}
	default:
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "espy ike %s: want one tunnel NAME\n%s", cmd, controlUsage)
			return exitUsage, true
		}
		req.Tunnel = fs.Arg(0)
		wait = 4 * time.Minute // the server bounds initiations to 3 minutes
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	resp, err := ikeservice.Call(ctx, *sock, req)
	if err != nil {
		fmt.Fprintf(stderr, "espy ike %s: %v\n", cmd, err)
		return exitNoService, true
	}
	if !resp.OK {
		fmt.Fprintf(stderr, "espy ike %s: %s\n", cmd, resp.Error)
		if resp.Code == ikeservice.ErrCodeBadRequest || resp.Code == ikeservice.ErrCodeVersion {
			return exitNoService, true
		}
		return exitRefused, true
	}
	switch {
	case cmd == "status" && asJSON:
		b, _ := json.MarshalIndent(resp.Status, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	case cmd == "status":
		printStatus(stdout, resp.Status, time.Now())
	case cmd == "reload" && asJSON:
		b, _ := json.MarshalIndent(resp.Reload, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	case cmd == "reload" && resp.Reload != nil:
		printReload(stdout, resp.Reload)
	case resp.Tunnel != nil:
		printStatus(stdout, &ikeservice.Status{Tunnels: []ikeservice.TunnelStatus{*resp.Tunnel}}, time.Now())
	}
	return 0, true
}

// controlForm reports whether the arguments of "initiate" name a tunnel:
// nothing but --socket and one word that is not an IP address.
func controlForm(args []string) bool {
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-socket" || a == "--socket":
			i++
		case strings.HasPrefix(a, "-socket=") || strings.HasPrefix(a, "--socket="):
		case strings.HasPrefix(a, "-"):
			return false
		default:
			words = append(words, a)
		}
	}
	if len(words) != 1 {
		return false
	}
	_, err := netip.ParseAddr(words[0])
	return err != nil
}

// printStatus writes the human form of a status.
func printStatus(w io.Writer, st *ikeservice.Status, now time.Time) {
	for _, l := range st.Listen {
		fmt.Fprintf(w, "listening on %s (NAT-T %s)\n", l.IKE, l.NATT)
	}
	if dp := st.DataPlane; dp != nil {
		// Absent from servers older than the field: print nothing.
		if dp.Kind == "none" {
			fmt.Fprintf(w, "data plane: none (%s)\n", dp.Reason)
		} else {
			fmt.Fprintf(w, "data plane: %s %s mtu %d (%s); no SA %d, unknown SPI %d, selector drops %d, send errors %d, device write errors %d\n",
				dp.Kind, dp.Device, dp.MTU, dp.Reason, dp.NoSA, dp.UnknownSPI, dp.SelectorDrops, dp.SendErrors, dp.TunWriteErrors)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TUNNEL\tSTATE\tSTART\tREMOTE\tIKE SAS\tCHILD SAS")
	for _, t := range st.Tunnels {
		children := 0
		for _, sa := range t.IKESAs {
			children += len(sa.ChildSAs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", t.Name, t.State, t.StartAction, orDash(t.Remote), len(t.IKESAs), children)
	}
	tw.Flush()
	for _, t := range st.Tunnels {
		if t.LastError != "" {
			fmt.Fprintf(w, "%s: last error: %s\n", t.Name, t.LastError)
		}
		for _, sa := range t.IKESAs {
			role := "responder"
			if sa.Initiator {
				role = "initiator"
			}
			fmt.Fprintf(w, "%s: IKE SA %s_i %s_r %s, %s === %s, peer %s, %s, up %s\n", t.Name, sa.SPIi, sa.SPIr, role,
				sa.Local, sa.Remote, sa.PeerID, algs(sa.Encr, sa.Integ, sa.PRF, sa.DH), now.Sub(sa.Established).Truncate(time.Second))
			for _, c := range sa.ChildSAs {
				fmt.Fprintf(w, "%s:   Child SA in %s out %s, %s, %s, encap %s, %s === %s", t.Name, c.SPIIn, c.SPIOut,
					algs(c.Encr, c.Integ, c.DH, esn(c.ESN)), c.Mode, c.Encap, strings.Join(c.LocalTS, ","), strings.Join(c.RemoteTS, ","))
				if c.Null {
					fmt.Fprint(w, ", ESP-NULL (inspected)")
				}
				if c.PacketsIn != nil && c.BytesIn != nil {
					fmt.Fprintf(w, ", in %d packets %d bytes", *c.PacketsIn, *c.BytesIn)
				}
				if c.PacketsOut != nil && c.BytesOut != nil {
					fmt.Fprintf(w, ", out %d packets %d bytes", *c.PacketsOut, *c.BytesOut)
				}
				fmt.Fprintln(w)
				if d := c.DataPlane; d != nil {
					fmt.Fprintf(w, "%s:     data plane in %d packets %d bytes, out %d packets %d bytes, %d auth failures, %d replay drops",
						t.Name, d.PacketsIn, d.BytesIn, d.PacketsOut, d.BytesOut, d.AuthFailures, d.ReplayDrops)
					if d.OtherDrops != 0 {
						fmt.Fprintf(w, ", %d other drops", d.OtherDrops)
					}
					if !d.Installed {
						fmt.Fprint(w, ", one direction not installed")
					} else if !d.Active {
						fmt.Fprint(w, ", outbound waiting for the peer")
					}
					fmt.Fprintln(w)
				}
			}
		}
	}
}

func algs(names ...string) string {
	var out []string
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "/")
}

func esn(on bool) string {
	if on {
		return "esn"
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printReload writes the human form of a reload's answer.
func printReload(w io.Writer, r *ikeservice.ReloadStatus) {
	fmt.Fprintf(w, "policy reloaded from %s: %d rules (%.1f ms); %d Child SAs checked, %d changed (%.1f ms)\n",
		r.File, r.Rules, r.LoadMillis, r.Checked, len(r.Decisions), r.CheckMillis)
	for _, d := range r.Decisions {
		fmt.Fprintf(w, "  %s %s: %s (lost to %s)", d.Tunnel, d.SPIIn, d.Action, strings.Join(d.Lost, ", "))
		if d.Action == ikeservice.DecisionRekey {
			fmt.Fprintf(w, " -> %s, %s === %s", orDash(d.NewSPIIn), strings.Join(d.LocalTS, ","), strings.Join(d.RemoteTS, ","))
		}
		if d.Error != "" {
			fmt.Fprintf(w, " error: %s", d.Error)
		}
		fmt.Fprintln(w)
	}
}
