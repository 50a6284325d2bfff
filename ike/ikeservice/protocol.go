package ikeservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ProtocolVersion is the version of the control protocol. A server answers
// requests of another version with ErrCodeVersion. Fields added to the
// responses (as "dataplane" was) keep the version: clients ignore fields
// they do not know, and a newer client finds them absent at an older
// server.
const ProtocolVersion = 1

// MaxLine bounds one request or response line of the control protocol.
// A status of 1024 tunnels with one IKE SA each stays well below it.
const MaxLine = 4 << 20

// maxRequestLine bounds what the server reads for one request.
const maxRequestLine = 4096

// Commands of the control protocol.
const (
	CmdStatus    = "status"
	CmdInitiate  = "initiate"
	CmdTerminate = "terminate"
	// CmdReload re-reads the policy section of the configuration file
	// (ReloadPolicy). Servers older than it answer bad_request.
	CmdReload = "reload"
)

// Error codes of the control protocol, for callers to branch on.
const (
	ErrCodeBadRequest    = "bad_request"     // not a valid request line
	ErrCodeVersion       = "version"         // unsupported protocol version
	ErrCodeUnknownTunnel = "unknown_tunnel"  // no tunnel of that name
	ErrCodeNotUp         = "not_established" // terminate: the tunnel has no IKE SA
	ErrCodeFailed        = "failed"          // the exchange failed (timeout, refused, ...)
	ErrCodePolicy        = "bad_policy"      // reload: the new policy was rejected; the old one stays
)

// Request is one line a client sends: {"version":1,"command":"initiate","tunnel":"site-b"}.
type Request struct {
	Version int    `json:"version"`
	Command string `json:"command"`
	Tunnel  string `json:"tunnel,omitempty"`
}

// Response is the server's answer line to one request.
type Response struct {
	Version int    `json:"version"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Code    string `json:"code,omitempty"` // one of the ErrCode constants when OK is false
	// Status answers "status"; Tunnel answers "initiate" and "terminate"
	// with the tunnel's state afterwards.
	Status *Status       `json:"status,omitempty"`
	Tunnel *TunnelStatus `json:"tunnel,omitempty"`
	// Reload answers "reload" when the new policy was taken.
	Reload *ReloadStatus `json:"reload,omitempty"`
}

// Status is the state of the whole service.
type Status struct {
	Listen  []Listener     `json:"listen"`
	Tunnels []TunnelStatus `json:"tunnels"`
	// DataPlane says what carries the Child SAs' traffic; absent from
	// servers older than the field.
	DataPlane *DataPlaneStatus `json:"dataplane,omitempty"`
}

// DataPlaneStatus is the data plane espy run opened (ike.dataplane) and
// its drops that belong to no SA.
type DataPlaneStatus struct {
	Kind      string `json:"kind"`             // none, tun or xfrm
	Device    string `json:"device,omitempty"` // TUN device
	MTU       int    `json:"mtu,omitempty"`
	KernelESP bool   `json:"kernel_esp"` // the kernel has ESP (what auto would use XFRM for)
	Reason    string `json:"reason"`     // why this kind
	// Totals of the TUN data plane (esptun.Status).
	NoSA           uint64 `json:"no_sa"`          // packets from the device matching no outbound SA
	UnknownSPI     uint64 `json:"unknown_spi"`    // ESP for no installed inbound SA
	SelectorDrops  uint64 `json:"selector_drops"` // decrypted packets outside their SA's selectors
	SendErrors     uint64 `json:"send_errors"`
	TunWriteErrors uint64 `json:"tun_write_errors"`
}

// Listener is one IKE endpoint's sockets.
type Listener struct {
	IKE  string `json:"ike"`
	NATT string `json:"natt"`
}

// TunnelStatus is one configured tunnel and its IKE SAs.
type TunnelStatus struct {
	Name        string `json:"name"`
	StartAction string `json:"start_action"`
	Remote      string `json:"remote,omitempty"` // configured peer address
	// State is "established" (an IKE SA is up), "connecting" (an
	// initiation is running), or "down".
	State     string        `json:"state"`
	LastError string        `json:"last_error,omitempty"`
	IKESAs    []IKESAStatus `json:"ike_sas"`
}

// IKESAStatus is one established IKE SA.
type IKESAStatus struct {
	Local       string          `json:"local"`
	Remote      string          `json:"remote"`
	PeerID      string          `json:"peer_id"`
	Initiator   bool            `json:"initiator"`
	SPIi        string          `json:"spi_i"` // 16 hex digits
	SPIr        string          `json:"spi_r"`
	NATT        bool            `json:"natt"`
	Encr        string          `json:"encr"`
	Integ       string          `json:"integ,omitempty"`
	PRF         string          `json:"prf"`
	DH          string          `json:"dh"`
	Established time.Time       `json:"established"`
	ChildSAs    []ChildSAStatus `json:"child_sas"`
}

// ChildSAStatus is one Child SA (an ESP SA pair).
type ChildSAStatus struct {
	SPIIn       string    `json:"spi_in"` // 8 hex digits
	SPIOut      string    `json:"spi_out"`
	Encr        string    `json:"encr"`
	Integ       string    `json:"integ,omitempty"`
	DH          string    `json:"dh,omitempty"` // PFS group of a rekeyed SA
	ESN         bool      `json:"esn"`
	Null        bool      `json:"null"` // payload in clear: espy sees inside
	Mode        string    `json:"mode"`
	Encap       string    `json:"encap"` // none or udp
	LocalTS     []string  `json:"local_ts"`
	RemoteTS    []string  `json:"remote_ts"`
	Established time.Time `json:"established,omitzero"`
	// Counters from the flow cache, present when espy run inspects the
	// link the SA travels on.
	PacketsIn  *uint64 `json:"packets_in,omitempty"`
	BytesIn    *uint64 `json:"bytes_in,omitempty"`
	PacketsOut *uint64 `json:"packets_out,omitempty"`
	BytesOut   *uint64 `json:"bytes_out,omitempty"`
	// DataPlane holds the data plane's counters of the SA pair, present
	// when espy run carries its traffic (ike.dataplane tun or auto).
	DataPlane *ChildDataPlaneStatus `json:"dataplane,omitempty"`
}

// ChildDataPlaneStatus is what the data plane counted on one Child SA:
// packets and bytes each way, and the inbound SA's drops.
type ChildDataPlaneStatus struct {
	PacketsIn    uint64 `json:"packets_in"`
	BytesIn      uint64 `json:"bytes_in"` // ESP payload bytes
	PacketsOut   uint64 `json:"packets_out"`
	BytesOut     uint64 `json:"bytes_out"`
	AuthFailures uint64 `json:"auth_failures"` // ICV did not verify
	ReplayDrops  uint64 `json:"replay_drops"`  // replayed or older than the window
	OtherDrops   uint64 `json:"other_drops"`   // malformed, bad padding, dummy packets
	// Installed is true when both directions are in the data plane;
	// Active when the outbound SA sends (a rekey's responder waits for
	// the peer's first packet on the new pair).
	Installed bool `json:"installed"`
	Active    bool `json:"active"`
}

// ErrBadRequest is wrapped by DecodeRequest's errors.
var ErrBadRequest = errors.New("ikeservice: bad request")

// DecodeRequest parses one request line (without the newline). It accepts
// only a JSON object with known fields, a known command and, for initiate
// and terminate, a tunnel name.
func DecodeRequest(line []byte) (Request, error) {
	var r Request
	if len(line) > maxRequestLine {
		return r, fmt.Errorf("%w: %d bytes, more than %d", ErrBadRequest, len(line), maxRequestLine)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Request{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if dec.More() {
		return Request{}, fmt.Errorf("%w: trailing data after the request object", ErrBadRequest)
	}
	if r.Version != ProtocolVersion {
		return r, fmt.Errorf("%w: protocol version %d, this server speaks %d", errVersion, r.Version, ProtocolVersion)
	}
	switch r.Command {
	case CmdStatus, CmdReload:
		if r.Tunnel != "" {
			return r, fmt.Errorf("%w: %s takes no tunnel", ErrBadRequest, r.Command)
		}
	case CmdInitiate, CmdTerminate:
		if r.Tunnel == "" {
			return r, fmt.Errorf("%w: %s needs a tunnel name", ErrBadRequest, r.Command)
		}
	default:
		return r, fmt.Errorf("%w: unknown command %q (status, initiate, terminate, reload)", ErrBadRequest, r.Command)
	}
	return r, nil
}

// errVersion marks a request of another protocol version.
var errVersion = fmt.Errorf("%w: unsupported version", ErrBadRequest)
