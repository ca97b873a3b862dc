-- wrk script for bench/peers.sh: each write carries 16 pipelined GET /
-- requests, and wrk counts all 16 responses before the next write.
local depth = 16

init = function(args)
    local r = {}
    for i = 1, depth do
        r[i] = wrk.format(nil, "/")
    end
    req = table.concat(r)
end

request = function()
    return req
end
