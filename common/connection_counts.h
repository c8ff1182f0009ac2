// What a TcpServer has seen of connections (common/tcp_server.h counts them). Each
// gateway's stats struct starts with it, so the three counts are read one way.
// A plain value.
#ifndef SAGATOR_COMMON_CONNECTION_COUNTS_H_
#define SAGATOR_COMMON_CONNECTION_COUNTS_H_

#include <cstdint>

namespace sagator::net {

struct ConnectionCounts {
  int64_t connections = 0;          // accepted and served
  int64_t refused_connections = 0;  // over max_connections, refused
  int64_t active_connections = 0;   // now
};

}  // namespace sagator::net

#endif  // SAGATOR_COMMON_CONNECTION_COUNTS_H_
