//go:build !linux

package control

import (
	"errors"
	"net"
)

// readPeer is not implemented off Linux; Server then refuses every request.
func readPeer(net.Conn) (Peer, error) {
	return Peer{}, errors.ErrUnsupported
}
