package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the version of the data plane protocol: the handshake and the
// frames. Both ends of a connection must speak the same version.
const Version uint16 = 3

var magic = [4]byte{'W', 'E', 'I', 'R'}

// Handshake statuses, sent by the accepting end.
const (
	statusOK          uint8 = 0
	statusBadToken    uint8 = 1
	statusBadVersion  uint8 = 2
	maxHandshakeField       = 4096
)

// ErrRefused means the accepting end refused the handshake (wrong token,
// other version).
var ErrRefused = errors.New("data plane connection refused")

// hello is what the dialing end sends first.
type hello struct {
	version uint16
	token   string
	name    string // of the dialing process, for logs
}

func appendHello(dst []byte, h hello) []byte {
	dst = append(dst, magic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, h.version)
	dst = appendField(dst, h.token)
	return appendField(dst, h.name)
}

func readHello(r io.Reader) (hello, error) {
	var fixed [6]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return hello{}, err
	}
	if [4]byte(fixed[:4]) != magic {
		return hello{}, fmt.Errorf("%w: no data plane handshake (first bytes %q)", ErrProtocol, fixed[:4])
	}
	h := hello{version: binary.BigEndian.Uint16(fixed[4:])}
	var err error
	if h.token, err = readField(r); err != nil {
		return hello{}, err
	}
	if h.name, err = readField(r); err != nil {
		return hello{}, err
	}
	return h, nil
}

// welcome is the accepting end's answer.
type welcome struct {
	version    uint16
	status     uint8
	maxPayload uint32 // largest frame payload the accepting end reads
	name       string
}

func appendWelcome(dst []byte, w welcome) []byte {
	dst = append(dst, magic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, w.version)
	dst = append(dst, w.status)
	dst = binary.BigEndian.AppendUint32(dst, w.maxPayload)
	return appendField(dst, w.name)
}

func readWelcome(r io.Reader) (welcome, error) {
	var fixed [11]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return welcome{}, err
	}
	if [4]byte(fixed[:4]) != magic {
		return welcome{}, fmt.Errorf("%w: the peer is not a weir data plane endpoint", ErrProtocol)
	}
	w := welcome{
		version:    binary.BigEndian.Uint16(fixed[4:]),
		status:     fixed[6],
		maxPayload: binary.BigEndian.Uint32(fixed[7:]),
	}
	var err error
	if w.name, err = readField(r); err != nil {
		return welcome{}, err
	}
	return w, nil
}

func appendField(dst []byte, s string) []byte {
	if len(s) > maxHandshakeField {
		s = s[:maxHandshakeField]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func readField(r io.Reader) (string, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return "", truncated(err)
	}
	n := binary.BigEndian.Uint16(l[:])
	if n > maxHandshakeField {
		return "", fmt.Errorf("%w: handshake field of %d bytes", ErrProtocol, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", truncated(err)
	}
	return string(b), nil
}
