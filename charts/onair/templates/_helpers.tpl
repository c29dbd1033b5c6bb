{{/* Chart name, overridable. */}}
{{- define "onair.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "onair.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "onair.operatorName" -}}
{{- printf "%s-operator" (include "onair.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "onair.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "onair.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object: the same app.kubernetes.io vocabulary the operator puts on children. */}}
{{- define "onair.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "onair.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: onair
{{- end -}}

{{- define "onair.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "onair.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The one onair image, by digest when given: the operator runs it and hands it to the agents. */}}
{{- define "onair.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator watches, as a list (empty: all). */}}
{{- define "onair.watchAll" -}}
{{- if not .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/*
Least privilege, no wildcards: exactly the verbs on exactly the resources the operator calls
(operator/onair/controller/: kubeapi.py, apply.py, reconcile.py, calltype.py, owned.py, and kopf).
Children are written with server-side apply (patch; the API server also checks create when the
apply creates the object), PVCs are created once (create), pruning deletes (delete), kopf lists
and watches every kind it handles. get is granted wherever list is: it reveals nothing more.
*/}}
{{- define "onair.namespacedRules" }}
# kopf watches Livestreams and patches its finalizer and progress annotations onto them.
- apiGroups: ["onair.dev"]
  resources: ["livestreams"]
  verbs: ["get", "list", "watch", "patch"]
# Status is the operator's only write to a Livestream.
- apiGroups: ["onair.dev"]
  resources: ["livestreams/status"]
  verbs: ["patch"]
# One Recording per finished session: created and kept up to date by the operator (never deleted
# by it: deleting one deletes the media, which is the user's call); kopf patches its finalizer.
- apiGroups: ["onair.dev"]
  resources: ["recordings"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["onair.dev"]
  resources: ["recordings/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The origin's with origin.replicas > 1: at most one replica disrupted at a time.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "secrets", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# NetworkPolicies of every Livestream's media pods are children like the rest; granted even with
# networkPolicy.enabled false, so that pruning removes those an earlier setting created.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The playback route of each Livestream (livestreams.playback.route). Granted whatever the route
# kind, like NetworkPolicies: switching the route off or from one kind to the other prunes the
# routes an earlier setting created. Rules for a resource the cluster does not serve (HTTPRoute
# without the Gateway API CRDs) are valid and grant nothing.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Agent pods' IPs are how the operator reaches each agent's /status and /desired; their status
# says why an agent does not answer (unschedulable, crash loop, image), for the Ready condition.
# Creating and deleting pods: only the one-shot pod that deletes a Recording's files from its
# volume when no recorder runs on it (docs/recordings.md).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
{{- define "onair.clusterRules" }}
# CallTypes are read from kopf's watch; no finalizer or annotation is ever written to them.
- apiGroups: ["onair.dev"]
  resources: ["calltypes"]
  verbs: ["get", "list", "watch"]
# status.livestreams: how many Livestreams use the CallType.
- apiGroups: ["onair.dev"]
  resources: ["calltypes/status"]
  verbs: ["patch"]
# kopf discovers and follows the resources it serves through the CRDs.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# kopf follows namespaces to start and stop its per-namespace watches.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* The TURN relay (turn.enabled): its Deployment, Service and Secret share this name. */}}
{{- define "onair.turnName" -}}
{{- printf "%s-turn" (include "onair.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "onair.turnSelectorLabels" -}}
app.kubernetes.io/name: {{ include "onair.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: turn
{{- end -}}

{{- define "onair.turnSecretName" -}}
{{- default (include "onair.turnName" .) .Values.turn.existingSecret -}}
{{- end -}}

{{/* The port encoders outside dial: the fixed nodePort with NodePort, else the Service port. */}}
{{- define "onair.turnPublicPort" -}}
{{- $t := .Values.turn -}}
{{- if $t.publicPort -}}{{ $t.publicPort }}
{{- else if eq $t.service.type "NodePort" -}}{{ required "turn.service.nodePort is required with turn.service.type NodePort: the TURN URL encoders are given names it" $t.service.nodePort }}
{{- else -}}{{ $t.service.port }}
{{- end -}}
{{- end -}}

{{/* ICE servers announced to WHIP clients: the user's, then the relay at its public address. */}}
{{- define "onair.whipIceServers" -}}
{{- $urls := .Values.livestreams.ingest.whipIceServers | default list -}}
{{- if .Values.turn.enabled -}}
{{- $host := required "turn.publicHost is required with turn.enabled: the address (DNS name or IP of your nodes or load balancer) WHIP encoders reach the TURN relay at" .Values.turn.publicHost -}}
{{- $port := include "onair.turnPublicPort" . -}}
{{- $urls = append $urls (printf "turn:%s:%s?transport=udp" $host $port) -}}
{{- if .Values.turn.tcp -}}
{{- $urls = append $urls (printf "turn:%s:%s?transport=tcp" $host $port) -}}
{{- end -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
