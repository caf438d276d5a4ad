#include "node/repair_link.h"

namespace kv::net {

void RepairLinkImpl::PendingCall::Finish(bool ok_, std::string answer_, std::string error_) {
  {
    std::lock_guard<std::mutex> l(mu);
    if (done) return;
    done = true;
    ok = ok_;
    answer = std::move(answer_);
    error = std::move(error_);
  }
  cv.notify_all();
}

bool RepairLinkImpl::Call(size_t node, cluster::PeerOp op, const std::string& body,
                          std::string* answer, std::string* error) {
  auto call = std::make_shared<PendingCall>();
  call->node = node;
  call->op = op;
  call->body = body;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_ || async_ == nullptr) {
      *error = "node is not serving";
      return false;
    }
    queued_.push_back(call);
    waiting_.insert(call);
    uv_async_send(async_);
  }
  {
    std::unique_lock<std::mutex> l(call->mu);
    call->cv.wait(l, [&] { return call->done; });
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    waiting_.erase(call);
  }
  *answer = std::move(call->answer);
  *error = call->error;
  return call->ok;
}

void RepairLinkImpl::Attach(uv_async_t* async) {
  std::lock_guard<std::mutex> l(mu_);
  async_ = async;
}

std::deque<std::shared_ptr<RepairLinkImpl::PendingCall>> RepairLinkImpl::TakeQueued() {
  std::lock_guard<std::mutex> l(mu_);
  std::deque<std::shared_ptr<PendingCall>> out;
  out.swap(queued_);
  return out;
}

void RepairLinkImpl::Close() {
  std::set<std::shared_ptr<PendingCall>> waiting;
  {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
    async_ = nullptr;
    queued_.clear();
    waiting = waiting_;
  }
  for (const auto& c : waiting) c->Finish(false, {}, "node shutting down");
}

}  // namespace kv::net
