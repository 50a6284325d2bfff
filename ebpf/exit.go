package ebpf

import "fmt"

// ExitReason says why the program returned what it did; exactly one exit
// counter is incremented per frame. The values are enum espy_exit_reason.
type ExitReason uint32

// Exit reasons.
const (
	ExitNonESP            = ExitReason(bpfEspyExitReasonESPY_EXIT_NON_ESP)            // not IPsec: pass
	ExitIKE               = ExitReason(bpfEspyExitReasonESPY_EXIT_IKE)                // UDP 500, or 4500 with the non-ESP marker: pass
	ExitKeepalive         = ExitReason(bpfEspyExitReasonESPY_EXIT_KEEPALIVE)          // NAT-T keepalive: pass
	ExitPendingSampled    = ExitReason(bpfEspyExitReasonESPY_EXIT_PENDING_SAMPLED)    // unknown flow, sampled: fail mode
	ExitPendingOverLimit  = ExitReason(bpfEspyExitReasonESPY_EXIT_PENDING_OVER_LIMIT) // unknown flow, N samples sent: fail mode
	ExitSampleRateLimited = ExitReason(bpfEspyExitReasonESPY_EXIT_SAMPLE_RATELIMITED) // unknown flow, token bucket empty: fail mode
	ExitSampleLost        = ExitReason(bpfEspyExitReasonESPY_EXIT_SAMPLE_LOST)        // unknown flow, sample ring full: fail mode
	ExitNullAllow         = ExitReason(bpfEspyExitReasonESPY_EXIT_NULL_ALLOW)         // ESP-NULL allowed: pass
	ExitNullDrop          = ExitReason(bpfEspyExitReasonESPY_EXIT_NULL_DROP)          // ESP-NULL dropped by rule or default
	ExitNullCount         = ExitReason(bpfEspyExitReasonESPY_EXIT_NULL_COUNT)         // ESP-NULL counted: pass
	ExitNullUnparsed      = ExitReason(bpfEspyExitReasonESPY_EXIT_NULL_UNPARSED)      // ESP-NULL, trailer or inner header unreadable: fail mode
	ExitEncryptedPass     = ExitReason(bpfEspyExitReasonESPY_EXIT_ENCRYPTED_PASS)
	ExitEncryptedDrop     = ExitReason(bpfEspyExitReasonESPY_EXIT_ENCRYPTED_DROP)
	ExitEncryptedCount    = ExitReason(bpfEspyExitReasonESPY_EXIT_ENCRYPTED_COUNT)
	ExitMalformed         = ExitReason(bpfEspyExitReasonESPY_EXIT_MALFORMED)    // truncated or inconsistent headers: fail mode
	ExitFragment          = ExitReason(bpfEspyExitReasonESPY_EXIT_FRAGMENT)     // IP fragment of (possible) IPsec: pass
	ExitExtHdrLimit       = ExitReason(bpfEspyExitReasonESPY_EXIT_EXTHDR_LIMIT) // too many IPv6 extension headers: fail mode
	// ExitWESPMismatch: the WESP header of a flow with a null verdict
	// disagrees with the verdict (E flag, TrailerLen, HeaderLen, next header
	// in tunnel mode), or a WESP header's next header with the ESP trailer's.
	// Fail mode; counted in the flow's FlowStats.Unparsed like ExitNullUnparsed.
	ExitWESPMismatch = ExitReason(bpfEspyExitReasonESPY_EXIT_WESP_MISMATCH)

	// NumExitReasons is the number of exit reasons.
	NumExitReasons = int(bpfEspyExitReasonESPY_EXIT_MAX)
)

var exitNames = [NumExitReasons]string{
	"non-esp", "ike", "keepalive", "pending-sampled", "pending-over-limit",
	"sample-ratelimited", "sample-lost", "null-allow", "null-drop", "null-count",
	"null-unparsed", "encrypted-pass", "encrypted-drop", "encrypted-count",
	"malformed", "fragment", "exthdr-limit", "wesp-mismatch",
}

// String returns the reason's stable name, as used in metrics.
func (r ExitReason) String() string {
	if int(r) < NumExitReasons {
		return exitNames[r]
	}
	return fmt.Sprintf("exit(%d)", uint32(r))
}

// ExitCounts holds one count per exit reason, indexed by ExitReason.
type ExitCounts [NumExitReasons]uint64
