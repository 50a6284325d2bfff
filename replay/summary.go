package replay

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

// Summary aggregates ended flows for the table output.
type Summary struct {
	rows map[rowKey]*row
}

type rowKey struct {
	class   heuristics.Class
	icv, iv uint8
	mode    heuristics.Mode
	nh      uint8
}

type row struct {
	flows, packets, bytes uint64
	toVerdict             uint64 // sum of packets to verdict
}

func (s *Summary) add(f *flowcache.Flow) {
	if s.rows == nil {
		s.rows = make(map[rowKey]*row)
	}
	v := &f.Verdict
	rk := rowKey{class: v.Class}
	if v.Class == heuristics.Null {
		rk.icv, rk.iv, rk.mode, rk.nh = v.ICVLen, v.IVLen, v.Mode, v.NextHeader
	}
	r := s.rows[rk]
	if r == nil {
		r = &row{}
		s.rows[rk] = r
	}
	r.flows++
	r.packets += f.Packets
	r.bytes += f.Bytes
	r.toVerdict += uint64(v.Packets)
}

// Flows returns the number of flows by verdict class.
func (s *Summary) Flows() map[heuristics.Class]uint64 {
	out := make(map[heuristics.Class]uint64)
	for k, r := range s.rows {
		out[k.class] += r.flows
	}
	return out
}

// classOrder lists null flows first: they are what espy is for.
var classOrder = [...]uint8{heuristics.Null: 0, heuristics.Encrypted: 1, heuristics.Unknown: 2}

// WriteTable writes the summary as an aligned table, with the frame
// counters beneath.
func (s *Summary) WriteTable(w io.Writer, c Counters) error {
	keys := make([]rowKey, 0, len(s.rows))
	for k := range s.rows {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b rowKey) int {
		if a.class != b.class {
			return int(classOrder[a.class]) - int(classOrder[b.class])
		}
		if c := int(s.rows[b].flows) - int(s.rows[a].flows); c != 0 {
			return c
		}
		return int(a.icv)<<16 | int(a.iv)<<8 | int(a.nh) - (int(b.icv)<<16 | int(b.iv)<<8 | int(b.nh))
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERDICT\tICV\tIV\tMODE\tINNER\tFLOWS\tPACKETS\tBYTES\tPKTS TO VERDICT")
	var total row
	for _, k := range keys {
		r := s.rows[k]
		icv, iv, mode, inner := "-", "-", "-", "-"
		if k.class == heuristics.Null {
			icv, iv, mode, inner = fmt.Sprint(k.icv), fmt.Sprint(k.iv), k.mode.String(), protoLabel(k.nh)
		}
		avg := "-"
		if r.flows > 0 && k.class != heuristics.Unknown {
			avg = fmt.Sprintf("%.1f", float64(r.toVerdict)/float64(r.flows))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n",
			k.class, icv, iv, mode, inner, r.flows, r.packets, r.bytes, avg)
		total.flows += r.flows
		total.packets += r.packets
		total.bytes += r.bytes
	}
	fmt.Fprintf(tw, "TOTAL\t\t\t\t\t%d\t%d\t%d\t\n", total.flows, total.packets, total.bytes)
	if err := tw.Flush(); err != nil {
		return err
	}
	parts := []string{
		fmt.Sprintf("%d frames", c.Frames),
		fmt.Sprintf("%d ESP", c.ESP),
		fmt.Sprintf("%d WESP", c.WESP),
		fmt.Sprintf("%d IKE on NAT-T", c.IKE),
		fmt.Sprintf("%d keepalives", c.Keepalives),
		fmt.Sprintf("%d other IP", c.Other),
		fmt.Sprintf("%d outer fragments (not reassembled)", c.Fragments),
		fmt.Sprintf("%d undecodable", c.Undecodable),
	}
	if c.UnsupportedLink > 0 {
		parts = append(parts, fmt.Sprintf("%d of unsupported link type", c.UnsupportedLink))
	}
	if c.InnerWritten > 0 {
		parts = append(parts, fmt.Sprintf("%d inner packets written", c.InnerWritten))
	}
	_, err := fmt.Fprintf(w, "\n%s\n", strings.Join(parts, ", "))
	return err
}

func protoLabel(nh uint8) string {
	switch nh {
	case 4:
		return "ipv4"
	case 41:
		return "ipv6"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	case 47:
		return "gre"
	case 59:
		return "none"
	}
	return fmt.Sprint(nh)
}
