// Command etcdvisor supervises the local etcd member of a Kubernetes
// control plane: run it as a daemon, and drive it over its control socket.
package main

import "os"

func main() { os.Exit(Execute()) }
