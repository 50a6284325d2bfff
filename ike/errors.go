package ike

import (
	"errors"
	"fmt"

	"github.com/espy-dpi/espy/ike/message"
)

// Sentinel errors.
var (
	// ErrTimeout means the peer did not answer within the retransmission
	// schedule.
	ErrTimeout = errors.New("ike: peer did not respond")
	// ErrAuthentication means the peer's AUTH payload did not verify or its
	// identity is not the configured one.
	ErrAuthentication = errors.New("ike: peer authentication failed")
	// ErrProposal means the peer chose something we did not propose, or no
	// proposal was acceptable.
	ErrProposal = errors.New("ike: unacceptable proposal")
	// ErrProtocol means the peer's messages broke the exchange rules.
	ErrProtocol = errors.New("ike: protocol error")
	// ErrClosed means the endpoint was closed.
	ErrClosed = errors.New("ike: endpoint closed")
	// ErrDeleted means the IKE SA was deleted while a request was pending.
	ErrDeleted = errors.New("ike: IKE SA deleted")
	// ErrBusy means the endpoint holds as many IKE SAs as it may.
	ErrBusy = errors.New("ike: too many IKE SAs")
	// ErrConfig means an invalid or policy-forbidden configuration.
	ErrConfig = errors.New("ike: invalid configuration")
)

// NotifyError is an error notification received from the peer.
type NotifyError struct {
	Type message.NotifyType
	Data []byte
}

func (e *NotifyError) Error() string { return fmt.Sprintf("ike: peer sent %v", e.Type) }
