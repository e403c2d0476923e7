// Command etcdvisor supervises the local etcd member of a Kubernetes
// control plane: run it as a daemon, and drive it over its control socket.
package main

import (
	"os"

	"github.com/etcdvisor/etcdvisor/internal/grpcpool"
)

// gRPC's pool must be set before the first client or server exists.
func init() { grpcpool.Install() }

func main() { os.Exit(Execute()) }
