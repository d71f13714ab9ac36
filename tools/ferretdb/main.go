// Command ferretdb runs FerretDB v1 (MongoDB wire protocol over PostgreSQL) for the local stack.
//
// It embeds the public github.com/FerretDB/FerretDB/ferretdb package instead of building
// FerretDB's own cmd/ferretdb: that binary panics at start when built with `go install`
// because its embedded version file is missing (FerretDB issue #2982).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	// The URL may carry credentials, so it is read from the environment rather than argv.
	urlEnv := flag.String("postgresql-url-env", "FERRETDB_POSTGRESQL_URL",
		"name of the environment variable holding the PostgreSQL URL")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	pgURL := os.Getenv(*urlEnv)
	if pgURL == "" {
		fmt.Fprintf(os.Stderr, "ferretdb: environment variable %s is empty; set it to a postgres:// URL\n", *urlEnv)
		os.Exit(2)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:        logger,
		Handler:       "postgresql",
		PostgreSQLURL: pgURL,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Info("ferretdb listening", "uri", f.MongoDBURI())
	if err := f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}
