// Package verdictlog writes espy's flow verdicts as JSON lines with Elastic
// Common Schema field names, for SIEMs. The schema is documented in
// docs/verdict-schema.md and docs/verdict-schema.json.
//
// Records are built by appending to a reused buffer: writing one does not
// allocate.
package verdictlog

import (
	"io"
	"strconv"
	"time"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
)

// Action is a record's event.action.
type Action uint8

// Record actions.
const (
	ActionVerdict Action = iota // esp-verdict: a verdict was reached
	ActionRevoked               // esp-verdict-revoked: a verdict was withdrawn
	ActionFlowEnd               // esp-flow-end: the flow ended (idle, evicted, or end of input)
)

var actionNames = [...]string{"esp-verdict", "esp-verdict-revoked", "esp-flow-end"}
var eventTypes = [...]string{`["info"]`, `["change"]`, `["end"]`}

func (a Action) String() string { return actionNames[a] }

// Record is one line of the log.
type Record struct {
	Action Action
	Time   time.Time
	Key    flowcache.Key
	Flow   *flowcache.Flow
	// Reason is set for ActionRevoked.
	Reason heuristics.Withdrawal
	// Inner is the inner flow of a null flow, when known.
	Inner *heuristics.Inner
	// Evicted marks a flow end forced by the cache's capacity.
	Evicted bool
}

// Writer writes records to an io.Writer, one JSON object a line.
type Writer struct {
	w   io.Writer
	buf []byte
	// Observer, when set, is written as observer.hostname.
	Observer string
}

// NewWriter returns a Writer on w. Wrap w in a bufio.Writer for files.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, buf: make([]byte, 0, 2048)} }

// Write writes r as one line.
func (w *Writer) Write(r *Record) error {
	w.buf = Append(w.buf[:0], r, w.Observer)
	_, err := w.w.Write(w.buf)
	return err
}

// Append appends r as one JSON line (with its newline) to dst.
func Append(dst []byte, r *Record, observer string) []byte {
	f := r.Flow
	v := &f.Verdict
	b := append(dst, `{"@timestamp":"`...)
	b = appendTimestamp(b, r.Time)
	b = append(b, `","event":{"kind":"event","category":["network"],"type":`...)
	b = append(b, eventTypes[r.Action]...)
	b = append(b, `,"action":"`...)
	b = append(b, actionNames[r.Action]...)
	b = append(b, `","dataset":"espy.verdict","module":"espy"`...)
	if r.Action == ActionRevoked {
		b = append(b, `,"reason":"`...)
		b = append(b, r.Reason.String()...)
		b = append(b, '"')
	}
	if r.Evicted {
		b = append(b, `,"reason":"evicted"`...)
	}
	b = append(b, `},"source":{"ip":"`...)
	b = r.Key.SrcAddr().AppendTo(b)
	b = append(b, '"')
	encap := f.Encap != packet.EncapNone
	if encap {
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(f.SrcPort), 10)
	}
	b = append(b, `},"destination":{"ip":"`...)
	b = r.Key.DstAddr().AppendTo(b)
	b = append(b, '"')
	if encap {
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(f.DstPort), 10)
	}
	b = append(b, `},"network":{"type":"`...)
	if r.Key.Family == 4 {
		b = append(b, "ipv4"...)
	} else {
		b = append(b, "ipv6"...)
	}
	switch f.Encap {
	case packet.EncapUDP:
		b = append(b, `","transport":"udp","iana_number":"17"`...)
	case packet.EncapTCP:
		b = append(b, `","transport":"tcp","iana_number":"6"`...)
	default:
		if f.Flags&flowcache.FlagWESP != 0 {
			b = append(b, `","transport":"wesp","iana_number":"141"`...)
		} else {
			b = append(b, `","transport":"esp","iana_number":"50"`...)
		}
	}
	b = append(b, `,"packets":`...)
	b = strconv.AppendUint(b, f.Packets, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendUint(b, f.Bytes, 10)
	b = append(b, `},"esp":{"spi":`...)
	b = strconv.AppendUint(b, uint64(r.Key.SPI), 10)
	b = append(b, `,"spi_hex":"0x`...)
	b = appendHex32(b, r.Key.SPI)
	b = append(b, `","verdict":"`...)
	b = append(b, v.Class.String()...)
	b = append(b, `","verdict_source":"`...)
	b = append(b, v.Source.String()...)
	b = append(b, `","encap":"`...)
	switch {
	case f.Flags&flowcache.FlagWESP != 0:
		b = append(b, "wesp"...)
	default:
		b = append(b, f.Encap.String()...)
	}
	b = append(b, '"')
	if v.Class == heuristics.Null {
		b = append(b, `,"icv_len":`...)
		b = strconv.AppendUint(b, uint64(v.ICVLen), 10)
		b = append(b, `,"iv_len":`...)
		b = strconv.AppendUint(b, uint64(v.IVLen), 10)
		b = append(b, `,"next_header":`...)
		b = strconv.AppendUint(b, uint64(v.NextHeader), 10)
		b = append(b, `,"mode":"`...)
		b = append(b, v.Mode.String()...)
		b = append(b, '"')
	}
	b = append(b, `,"packets":`...)
	b = strconv.AppendUint(b, f.Packets, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendUint(b, f.Bytes, 10)
	if v.Packets > 0 {
		b = append(b, `,"packets_to_verdict":`...)
		b = strconv.AppendUint(b, uint64(v.Packets), 10)
	}
	b = append(b, `,"score":`...)
	b = strconv.AppendUint(b, uint64(v.Score), 10)
	b = append(b, `,"evidence":`...)
	b = v.Evidence.AppendJSON(b)
	if f.Flags&flowcache.FlagMoved != 0 {
		b = append(b, `,"moved":true`...)
	}
	if in := r.Inner; in != nil && v.Class == heuristics.Null {
		b = append(b, `,"inner":{"source":{"ip":"`...)
		b = in.Src.AppendTo(b)
		b = append(b, '"')
		if in.SrcPort != 0 || in.DstPort != 0 {
			b = append(b, `,"port":`...)
			b = strconv.AppendUint(b, uint64(in.SrcPort), 10)
		}
		b = append(b, `},"destination":{"ip":"`...)
		b = in.Dst.AppendTo(b)
		b = append(b, '"')
		if in.SrcPort != 0 || in.DstPort != 0 {
			b = append(b, `,"port":`...)
			b = strconv.AppendUint(b, uint64(in.DstPort), 10)
		}
		b = append(b, `},"network":{"iana_number":"`...)
		b = strconv.AppendUint(b, uint64(in.Proto), 10)
		b = append(b, '"')
		if name := protoName(in.Proto); name != "" {
			b = append(b, `,"transport":"`...)
			b = append(b, name...)
			b = append(b, '"')
		}
		b = append(b, "}}"...)
	}
	b = append(b, '}')
	if observer != "" {
		b = append(b, `,"observer":{"hostname":`...)
		b = strconv.AppendQuote(b, observer)
		b = append(b, `,"product":"espy","type":"ids"}`...)
	}
	return append(b, "}\n"...)
}

func appendHex32(b []byte, x uint32) []byte {
	const digits = "0123456789abcdef"
	for s := 28; s >= 0; s -= 4 {
		b = append(b, digits[x>>uint(s)&0xf])
	}
	return b
}

// protoName is the ECS network.transport keyword of an IP protocol.
func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	case 47:
		return "gre"
	case 50:
		return "esp"
	case 4:
		return "ipv4"
	case 41:
		return "ipv6"
	case 59:
		return "ipv6-nonxt"
	}
	return ""
}
