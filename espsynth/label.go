package espsynth

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// Label is the ground truth of one ESP flow (one SA on the wire), with the
// fields and meanings of the shared corpus's labels.jsonl.
type Label struct {
	Pcap    string   `json:"pcap"`
	Src     string   `json:"src"`
	Dst     string   `json:"dst"`
	SPI     uint32   `json:"spi"`
	Verdict string   `json:"verdict"` // "null" or "encrypted"
	ICVLen  int      `json:"icv_len"`
	IVLen   int      `json:"iv_len"`
	Mode    string   `json:"mode"`  // "tunnel" or "transport"
	Encap   string   `json:"encap"` // "udp" or "none"
	Inner   string   `json:"inner"` // "ipv4/tcp", "tcp", "ipv6/mixed", …
	Auth    string   `json:"auth"`
	Cipher  string   `json:"cipher"`
	Packets int      `json:"packets"`
	Outer   string   `json:"outer"`   // "ipv4" or "ipv6"
	Padding string   `json:"padding"` // "minimal", "extra" or "tfc"
	Sport   *int     `json:"sport"`   // UDP ports for encap "udp", else null
	Dport   *int     `json:"dport"`
	Tags    []string `json:"tags"`
}

// AppendJSON appends the label as one JSON object, laid out exactly as the
// corpus's Python generator writes it (", " and ": " separators, keys in
// corpus order), without a trailing newline.
func (l *Label) AppendJSON(b []byte) []byte {
	str := func(b []byte, k, v string) []byte {
		b = append(b, k...)
		q, _ := json.Marshal(v) // a string always marshals
		return append(b, q...)
	}
	num := func(b []byte, k string, v int64) []byte {
		return strconv.AppendInt(append(b, k...), v, 10)
	}
	port := func(b []byte, k string, v *int) []byte {
		if v == nil {
			return append(append(b, k...), "null"...)
		}
		return num(b, k, int64(*v))
	}
	b = str(b, `{"pcap": `, l.Pcap)
	b = str(b, `, "src": `, l.Src)
	b = str(b, `, "dst": `, l.Dst)
	b = num(b, `, "spi": `, int64(l.SPI))
	b = str(b, `, "verdict": `, l.Verdict)
	b = num(b, `, "icv_len": `, int64(l.ICVLen))
	b = num(b, `, "iv_len": `, int64(l.IVLen))
	b = str(b, `, "mode": `, l.Mode)
	b = str(b, `, "encap": `, l.Encap)
	b = str(b, `, "inner": `, l.Inner)
	b = str(b, `, "auth": `, l.Auth)
	b = str(b, `, "cipher": `, l.Cipher)
	b = num(b, `, "packets": `, int64(l.Packets))
	b = str(b, `, "outer": `, l.Outer)
	b = str(b, `, "padding": `, l.Padding)
	b = port(b, `, "sport": `, l.Sport)
	b = port(b, `, "dport": `, l.Dport)
	b = append(b, `, "tags": [`...)
	for i, t := range l.Tags {
		if i > 0 {
			b = append(b, ", "...)
		}
		q, _ := json.Marshal(t)
		b = append(b, q...)
	}
	return append(b, "]}"...)
}

// WriteLabels writes labels as JSON lines.
func WriteLabels(w io.Writer, labels []Label) error {
	var b []byte
	for i := range labels {
		b = append(labels[i].AppendJSON(b[:0]), '\n')
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("espsynth: writing labels: %w", err)
		}
	}
	return nil
}
