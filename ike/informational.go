package ike

import (
	"encoding/binary"

	"github.com/espy-dpi/espy/ike/message"
)

// handleRequest processes a request from the peer on an existing IKE SA.
func (sa *IKESA) handleRequest(in inbound) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.state == stateDead {
		return
	}
	switch id := in.hdr.MessageID; {
	case id+1 == sa.peerReqID && sa.lastResp != nil:
		// A retransmission: answer with the very same bytes (RFC 7296 2.1).
		sa.sendAll(sa.lastResp, in.from, in.natt)
		return
	case id != sa.peerReqID:
		sa.log.Debug("ike: request with unexpected message ID", "id", id, "want", sa.peerReqID)
		return
	}
	if sa.in == nil {
		return
	}
	if !sa.initiator && sa.state == stateInit {
		if in.hdr.Exchange == message.IKE_AUTH {
			sa.handleAuthLocked(in)
		}
		return
	}
	ps, err := sa.openRequestLocked(in)
	if err != nil {
		sa.log.Debug("ike: bad request", "err", err)
		return
	}
	switch in.hdr.Exchange {
	case message.INFORMATIONAL:
		sa.informationalLocked(in, ps)
	case message.CREATE_CHILD_SA:
		sa.createChildLocked(in, ps)
	default:
		sa.respondLocked(in, []message.Payload{&message.Notify{Kind: message.INVALID_SYNTAX}})
	}
}

// informationalLocked answers an INFORMATIONAL request: deletes and
// liveness checks.
func (sa *IKESA) informationalLocked(in inbound, ps []message.Payload) {
	var resp []message.Payload
	deleteIKE := false
	for _, p := range ps {
		d, ok := p.(*message.Delete)
		if !ok {
			continue
		}
		switch d.Protocol {
		case message.ProtoIKE:
			deleteIKE = true
		case message.ProtoESP:
			var ours [][]byte
			for _, spi := range d.SPIs {
				if c := sa.removeChildLocked(binary.BigEndian.Uint32(spi)); c != nil {
					ours = append(ours, binary.BigEndian.AppendUint32(nil, c.InSPI))
				}
			}
			if len(ours) > 0 {
				resp = append(resp, &message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: ours})
			}
		}
	}
	if deleteIKE {
		// RFC 7296 1.4.1: the response to an IKE SA delete is empty.
		sa.respondLocked(in, nil)
		if sa.lt.rekeyNi != nil && sa.lt.peerRekey != nil {
			// The peer's rekey won a collision (RFC 7296 2.8.2) and it
			// deletes the old SA: RekeyIKE moves to the peer's new SA.
			sa.lt.oldDeleted = true
			sa.lt.abortRekey()
			sa.log.Info("ike: peer deleted the old IKE SA during a simultaneous rekey")
			return
		}
		sa.log.Info("ike: peer deleted IKE SA", "spii", sa.spiI, "spir", sa.spiR)
		go sa.teardown()
		return
	}
	sa.respondLocked(in, resp)
}

// removeChildLocked unregisters and forgets the Child SA whose outbound SPI
// (the peer's inbound SPI) is spi.
func (sa *IKESA) removeChildLocked(spi uint32) *ChildSA {
	for i, c := range sa.children {
		if c.OutSPI == spi {
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			c.unregister(sa.cfg.Registrar)
			return c
		}
	}
	return nil
}
