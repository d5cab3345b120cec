// Command gokit-consul discovers a service the way a Go service built with go-kit does:
// through go-kit's Consul instancer (github.com/go-kit/kit/sd/consul) on top of the official
// Consul API client. It prints one JSON object per line for each event the instancer sends:
// {"instances": ["host:port", ...]} (sorted) or {"error": "..."}.
//
// The tests of sd-consul build and run it to check that Go peers read our registrations.
//
//	gokit-consul -addr 127.0.0.1:8500 -service web [-tag prod] [-passing=true] [-token-env CONSUL_HTTP_TOKEN]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/consul"
	"github.com/go-kit/log"
	consulapi "github.com/hashicorp/consul/api"
)

type tagList []string

func (t *tagList) String() string     { return fmt.Sprint(*t) }
func (t *tagList) Set(v string) error { *t = append(*t, v); return nil }

type line struct {
	Instances []string `json:"instances"`
	Error     string   `json:"error,omitempty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8500", "the Consul agent's HTTP address")
	service := flag.String("service", "", "the service to discover")
	passing := flag.Bool("passing", true, "only instances whose checks pass")
	var tags tagList
	flag.Var(&tags, "tag", "a tag the instances must have (repeatable)")
	flag.Parse()
	if *service == "" {
		fmt.Fprintln(os.Stderr, "gokit-consul: -service is required")
		os.Exit(2)
	}

	config := consulapi.DefaultConfig() // reads CONSUL_HTTP_TOKEN and the other CONSUL_* variables
	config.Address = *addr
	apiClient, err := consulapi.NewClient(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gokit-consul:", err)
		os.Exit(1)
	}
	logger := log.NewLogfmtLogger(os.Stderr)
	instancer := consul.NewInstancer(consul.NewClient(apiClient), logger, *service, tags, *passing)
	defer instancer.Stop()

	events := make(chan sd.Event, 16)
	instancer.Register(events)
	defer instancer.Deregister(events)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	out := json.NewEncoder(os.Stdout)
	for {
		select {
		case event := <-events:
			record := line{Instances: append([]string{}, event.Instances...)}
			sort.Strings(record.Instances)
			if event.Err != nil {
				record.Error = event.Err.Error()
			}
			if err := out.Encode(record); err != nil {
				os.Exit(1)
			}
		case <-stop:
			return
		}
	}
}
