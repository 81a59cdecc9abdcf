//! pcap/pcapng reader.
