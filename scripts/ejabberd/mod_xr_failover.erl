%% mod_xr_failover: stanzas for a component connection that is gone go to a
%% live connection of the same component instead of nowhere.
%%
%% With domain_balancing and component_number N, ejabberd 23.01 keeps N
%% route slots for a component domain (ejabberd_router_mnesia). When a
%% connection dies its slot stays with pid = undefined, and
%% ejabberd_router:do_route/2 drops every stanza hashed to it, silently,
%% until a new connection handshakes. Two things lose stanzas there:
%%
%% 1. Stanzas routed after the slot is freed. This filter_packet hook
%%    computes the slot the router is about to pick (balancing_route/4:
%%    phash2 of the balancing value over the routes sorted by slot) and, when
%%    that slot has no connection, hands the stanza to a live one (picked by
%%    the same value, so one user's stanzas stay together).
%% 2. Stanzas routed before: written to the socket of an instance that died
%%    before reading them, or still in the mailbox of the connection process
%%    when it saw the TCP close. Neither ejabberd nor the dead instance can
%%    tell. So the hook keeps each request (a chat or normal message with a
%%    body to a user@component JID) until the component answers that user
%%    from that JID with any message; the request's connection process is
%%    monitored, and when it goes down, the requests it never answered are
%%    routed again, to a live connection. A request answered and then cut
%%    short by the crash is not repeated (the component's own journal tells
%%    the user after its restart).
%%
%% 3. Answers to the component's own IQs from JIDs that are not users: the
%%    server's XEP-0199 pongs, its disco answers, a proxy's streamhost. They
%%    come from the server's domain or the proxy's JID, which domain_balancing
%%    hashes to one slot, so every other instance waits for them in vain. The
%%    hook notes which connection sent each IQ get/set and hands the result
%%    or error back to that connection.
%%
%% When no connection of the component is left, a request is answered with a
%% service-unavailable error that the user's client shows, instead of
%% silence. Other stanzas for a dead slot are dropped as ejabberd does.
%% Stanzas for live slots, and domains without domain_balancing, pass
%% untouched. Kept requests live on the node of their connection (the
%% component's answers pass the hook there); a node that goes down takes its
%% own with it.
%%
%% Install: compile with erlc against ejabberd's code path, put the .beam on
%% ejabberd's code path (e.g. ERL_OPTIONS="-pa DIR" in ejabberdctl.cfg) and
%% add `mod_xr_failover: {}` to `modules:` (scripts/ejabberd.sh does both with
%% XR_EJ_FAILOVER=true).
-module(mod_xr_failover).
-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_doc/0]).
-export([filter_packet/1]).
-export([keeper/0]).

-include_lib("p1_xmpp/include/xmpp.hrl").

%% ejabberd_router.hrl's record, by position (its header is not installed by Debian).
-record(route, {domain, server_host, pid, local_hint}).

-define(KEEPER, mod_xr_failover_keeper).
-define(TABLE, mod_xr_failover_requests).
-define(IQS, mod_xr_failover_iqs).
%% a request unanswered for this long is forgotten: its connection is alive
%% but stuck, and sending it elsewhere later would surprise more than help
-define(MAX_AGE_MS, 60000).
-define(SWEEP_MS, 10000).
-define(MAX_KEPT, 100000).

start(_Host, _Opts) ->
    %% filter_packet is one global hook; adding it again for another host is a no-op.
    ejabberd_hooks:add(filter_packet, ?MODULE, filter_packet, 10),
    case whereis(?KEEPER) of
        undefined ->
            %% not linked to the caller: the table lives as long as the keeper
            Pid = proc_lib:spawn(?MODULE, keeper, []),
            register(?KEEPER, Pid);
        _ ->
            ok
    end,
    ok.

stop(_Host) ->
    ejabberd_hooks:delete(filter_packet, ?MODULE, filter_packet, 10),
    case whereis(?KEEPER) of
        undefined -> ok;
        Pid -> Pid ! stop
    end,
    ok.

reload(_Host, _NewOpts, _OldOpts) -> ok.
depends(_Host, _Opts) -> [].
mod_options(_Host) -> [].
mod_doc() -> #{desc => ["Stanzas for a dead domain_balancing connection go to a live one."]}.

filter_packet(drop) ->
    drop;
filter_packet(Pkt) ->
    %% Never in the way: anything unexpected leaves the stanza to the router.
    try answered(Pkt) catch _:_ -> ok end,
    try sent_iq(Pkt) catch _:_ -> ok end,
    case try iq_answer(Pkt) catch _:_ -> Pkt end of
        drop -> drop;
        _ -> try reroute(Pkt) catch _:_ -> Pkt end
    end.

%% An IQ get/set a component connection sends (the hook runs in that
%% connection's process): its answer is to go back to it.
sent_iq(#iq{type = T, id = Id, from = #jid{lserver = S} = From, to = To}) when T =:= get; T =:= set ->
    case balancing(S) of
        undefined ->
            ok;
        _ ->
            Self = self(),
            {ok, Routes} = (ejabberd_router:get_backend()):find_routes(S),
            case lists:keymember(Self, #route.pid, Routes) of
                true ->
                    ets:info(?IQS, size) < ?MAX_KEPT andalso
                        ets:insert(?IQS, {{jid:tolower(From), jid:tolower(To), Id}, Self, now_ms()});
                false ->
                    ok
            end
    end;
sent_iq(_) ->
    ok.

iq_answer(#iq{type = T, id = Id, from = From, to = #jid{lserver = S} = To} = Pkt) when
    T =:= result; T =:= error ->
    case balancing(S) of
        undefined ->
            Pkt;
        _ ->
            case ets:take(?IQS, {jid:tolower(To), jid:tolower(From), Id}) of
                [{_, Pid, _}] ->
                    case alive(Pid) of
                        true ->
                            ejabberd_cluster:send(Pid, {route, Pkt}),
                            drop;
                        false ->
                            Pkt
                    end;
                [] ->
                    Pkt
            end
    end;
iq_answer(Pkt) ->
    Pkt.

now_ms() -> erlang:monotonic_time(millisecond).

reroute(Pkt) ->
    To = xmpp:get_to(Pkt),
    {_, LDomain, _} = jid:tolower(To),
    case balancing(LDomain) of
        undefined ->
            Pkt;
        Opts ->
            Backend = ejabberd_router:get_backend(),
            case Backend:find_routes(LDomain) of
                {ok, Routes} when length(Routes) > 1 -> pick(Pkt, To, Opts, Routes);
                _ -> Pkt
            end
    end.

pick(Pkt, To, Opts, Routes) ->
    Type = maps:get(type, Opts, random),
    Value = balancing_value(xmpp:get_from(Pkt), To, Type),
    Sorted = lists:ukeysort(#route.local_hint, Routes),
    Chosen = lists:nth(erlang:phash2(Value, length(Sorted)) + 1, Sorted),
    case alive(Chosen#route.pid) of
        true ->
            %% with random balancing the router draws its own slot, unknown here
            Type =/= random andalso keep(Chosen#route.pid, Pkt),
            Pkt;
        false ->
            case [R || #route{pid = P} = R <- Sorted, alive(P)] of
                [] ->
                    nobody_left(Pkt);
                Live ->
                    Other = lists:nth(erlang:phash2(Value, length(Live)) + 1, Live),
                    keep(Other#route.pid, Pkt),
                    ejabberd_cluster:send(Other#route.pid, {route, Pkt}),
                    drop
            end
    end.

nobody_left(Pkt) ->
    case is_request(Pkt) of
        true ->
            Txt = <<"The service is not connected at the moment (it is restarting); "
                    "please ask again in a minute.">>,
            ejabberd_router:route_error(Pkt, xmpp:err_service_unavailable(Txt, xmpp:get_lang(Pkt))),
            drop;
        false ->
            Pkt
    end.

%% A connection's process; one on this node that has just died counts as gone
%% (its slot is freed a moment later, when ejabberd_service:terminate/2 runs),
%% and so does one on a node this node no longer sees.
alive(Pid) when is_pid(Pid), node(Pid) =:= node() -> erlang:is_process_alive(Pid);
alive(Pid) when is_pid(Pid) -> lists:member(node(Pid), nodes());
alive(_) -> false.

balancing(LDomain) -> maps:get(LDomain, ejabberd_option:domain_balancing(), undefined).

%% ejabberd_router:get_domain_balancing/3 (not exported), 23.01.
balancing_value(_From, _To, random) -> erlang:system_time();
balancing_value(From, _To, source) -> jid:tolower(From);
balancing_value(_From, To, destination) -> jid:tolower(To);
balancing_value(From, _To, bare_source) -> jid:remove_resource(jid:tolower(From));
balancing_value(_From, To, bare_destination) -> jid:remove_resource(jid:tolower(To)).

%% What a user asks a component: a message with a body to one of its JIDs.
is_request(#message{type = T, body = [_ | _], to = #jid{luser = U}}) when
    (T =:= chat orelse T =:= normal), U =/= <<>> ->
    true;
is_request(_) ->
    false.

%% {user, component JID}, both bare and lowercased
pair(From, To) -> {jid:remove_resource(jid:tolower(From)), jid:remove_resource(jid:tolower(To))}.

%% Keeps a request handed to connection Pid, on Pid's node, until it is answered.
%% Whatever fails here leaves the routing as decided.
keep(Pid, Pkt) ->
    try keep1(Pid, Pkt) catch _:_ -> ok end.

keep1(Pid, Pkt) ->
    case is_request(Pkt) of
        true ->
            Entry = {pair(xmpp:get_from(Pkt), xmpp:get_to(Pkt)), erlang:unique_integer([monotonic]), Pid, now_ms(),
                     Pkt},
            case node(Pid) =:= node() of
                %% stored before the router hands the stanza over, so its answer cannot come first
                true ->
                    insert(Entry),
                    ?KEEPER ! {watch, Pid};
                %% one distribution channel: this reaches the keeper before the stanza reaches Pid
                false ->
                    {?KEEPER, node(Pid)} ! {keep, Pid, Entry}
            end,
            ok;
        false ->
            ok
    end.

insert(Entry) ->
    case ets:info(?TABLE, size) of
        N when is_integer(N), N < ?MAX_KEPT -> ets:insert(?TABLE, Entry);
        _ -> false
    end.

%% Any message from user@component to a user answers that user's requests to it.
answered(#message{from = #jid{luser = U, lserver = S} = From, to = To}) when U =/= <<>> ->
    case balancing(S) of
        undefined -> ok;
        _ -> ets:delete(?TABLE, pair(To, From))
    end;
answered(_) ->
    ok.

%% The keeper owns the table, watches the connections that hold requests and
%% routes again what a dead one left unanswered.
keeper() ->
    ets:new(?TABLE, [bag, public, named_table, {write_concurrency, true}]),
    ets:new(?IQS, [set, public, named_table, {write_concurrency, true}]),
    erlang:send_after(?SWEEP_MS, self(), sweep),
    keeper_loop(#{}).

keeper_loop(Watched) ->
    receive
        {keep, Pid, Entry} ->
            insert(Entry),
            keeper_loop(watch(Pid, Watched));
        {watch, Pid} ->
            keeper_loop(watch(Pid, Watched));
        {'DOWN', _, process, Pid, _} ->
            replay(Pid),
            keeper_loop(maps:remove(Pid, Watched));
        sweep ->
            Cutoff = now_ms() - ?MAX_AGE_MS,
            ets:select_delete(?TABLE, [{{'_', '_', '_', '$1', '_'}, [{'<', '$1', Cutoff}], [true]}]),
            %% an IQ unanswered this long has timed out at the component
            ets:select_delete(?IQS, [{{'_', '_', '$1'}, [{'<', '$1', Cutoff}], [true]}]),
            erlang:send_after(?SWEEP_MS, self(), sweep),
            keeper_loop(Watched);
        stop ->
            ok;
        _ ->
            keeper_loop(Watched)
    end.

%% One monitor per connection holding requests.
watch(Pid, Watched) when is_map_key(Pid, Watched) ->
    Watched;
watch(Pid, Watched) ->
    erlang:monitor(process, Pid),
    Watched#{Pid => true}.

replay(Pid) ->
    Left = lists:keysort(2, ets:match_object(?TABLE, {'_', '_', Pid, '_', '_'})),
    lists:foreach(fun(E) -> ets:delete_object(?TABLE, E) end, Left),
    Cutoff = now_ms() - ?MAX_AGE_MS,
    Again = [Pkt || {_, _, _, T, Pkt} <- Left, T >= Cutoff],
    case Again of
        [] ->
            ok;
        _ ->
            logger:notice("mod_xr_failover: ~B unanswered request(s) held by a component connection that went down "
                          "(~p) routed again", [length(Again), Pid]),
            %% through the hook again: a live slot, or the error when none is left
            lists:foreach(fun ejabberd_router:route/1, Again)
    end.
